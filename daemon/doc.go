// Package daemon is the long-running half of capstan (`capstan run`): a loop that
// reconciles one revision at a time, the HTTP server that reports on it (health,
// readiness, Prometheus metrics, a JSON status API, a server-rendered status page, the
// sync API and the webhook mount point), drift and failure notifications, and the
// leader election that makes several replicas safe.
//
// It knows nothing of Docker, Git or SLB. The caller supplies a ReconcileFunc that
// loads the source, observes, plans and (when asked to) applies, and returns a Report;
// a LeaseStore (sinks/swarm.Lease) for leader election; http.Handlers for webhooks. So
// the loop's rules are tested with fakes and the wiring lives in cmd/capstan.
//
// # Errors
//
// Every failed reconcile is classified, and the class decides what the loop does next
// (the vocabulary is Flux's):
//
//   - Stalled: a human must act — the manifests do not validate, an object belongs to
//     someone else, the plan would delete most services, Swarm rolled an update back. The
//     loop does not retry the same revision on its interval; it waits for a new revision
//     (a push, a webhook, a file change) or an explicit sync (POST /api/v1/sync).
//   - Waiting: the change was written but has not converged yet. The loop looks again
//     after a short delay; this is not a failure.
//   - Transient: everything else (an engine restarting, a Git server away, an API
//     answering 5xx). The loop retries with capped exponential backoff and jitter.
//
// A source that fails to load applies nothing, so the last good revision stays applied;
// status keeps showing it as the applied revision next to the error.
//
// # Shutdown
//
// When Run's context is cancelled (SIGTERM), a reconcile in flight is not cut off: its
// context stays alive, Request.Stop is closed, and the ReconcileFunc is expected to finish
// the write in flight and start no other. Only after Config.ShutdownGrace is its context
// cancelled.
package daemon
