package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
	"github.com/capstan-dev/capstan/source"
)

// reconciler is capstan run's daemon.ReconcileFunc. Unlike a CLI command it lives across
// reconciles: the source keeps its Git cache, the Docker client its connection and
// negotiated version, and the desired set is loaded once per revision, so a reconcile of
// an unchanged source costs one ref listing (Git) or a directory digest, and Observe's
// constant handful of requests.
type reconciler struct {
	instance string
	flags    runFlags
	log      *slog.Logger
	metrics  *daemon.Metrics
	src      source.Source
	cli      *client.Client
	base     *client.Client // owns the transport cli shares
	sink     *swarmsink.Sink
	// routes is the SLB stage (cmd/capstan/slb.go), kept across reconciles with its
	// sink's caches; its sink is nil when no SLB is configured.
	routes *routeStage
	// leader reports whether this replica may still write (nil: always).
	leader func() bool
	// progress receives apply's progress lines (capstan run --once); nil discards.
	progress io.Writer

	// the desired state of the last revision loaded
	revision     string
	desired      *resource.Set
	warnings     []string
	routeReports []daemon.RouteReport
}

func (a *app) newReconciler(f runFlags, log *slog.Logger, m *daemon.Metrics) (*reconciler, error) {
	src, err := runSource(f, log)
	if err != nil {
		return nil, err
	}
	base, cli, err := a.meteredDockerClient(m)
	if err != nil {
		return nil, err
	}
	instance := a.instanceName()
	// The stage is made once, on an empty set: routes are dropped (or kept) per load.
	routes, err := a.newRouteStage(f.slb, resource.NewSet())
	if err != nil {
		_ = cli.Close()
		_ = base.Close()
		return nil, err
	}
	sink := swarmsink.New(cli, instance)
	sink.OnWarning(func(k resource.Key, w string) {
		log.Warn("the engine warned about a write", "key", k.String(), "warning", w)
	})
	return &reconciler{
		instance: instance, flags: f, log: log, metrics: m, src: src,
		cli: cli, base: base, sink: sink, routes: routes,
	}, nil
}

// runSource opens the source the flags name, with the credentials of the shared source
// flags (--git-*, CAPSTAN_GIT_*, their *_FILE variants). It is opened once: the Git cache
// and what the source remembers (the last commit, for force-push detection) live as long
// as the daemon.
func runSource(f runFlags, log *slog.Logger) (source.Source, error) {
	opts, err := f.sourceFlags.options(log)
	if err != nil {
		return nil, err
	}
	src, err := source.New(opts)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	return src, nil
}

func (r *reconciler) close() {
	_ = r.cli.Close()
	_ = r.base.Close()
}

// watchDir is the directory a local source's file watcher polls.
func (r *reconciler) watchDir() string {
	return filepath.Join(r.flags.source, r.flags.path)
}

// head is the loop's cheap revision probe (daemon.Config.Head).
func (r *reconciler) head(ctx context.Context) (string, error) {
	start := time.Now()
	rev, err := r.src.Head(ctx)
	r.metrics.SourcePoll(time.Since(start), err)
	if err != nil {
		return "", err
	}
	return rev.String(), nil
}

// reconcile is one pass: fetch, load (when the revision moved), observe, plan, apply
// (leader only), observe again for health.
func (r *reconciler) reconcile(ctx context.Context, req daemon.Request) (daemon.Report, error) {
	start := time.Now()
	snap, err := r.src.Fetch(ctx)
	r.metrics.SourcePoll(time.Since(start), err)
	if err != nil {
		return daemon.Report{}, r.sourceFailed(err)
	}
	rev := snap.Revision.String()
	if err := r.load(snap.Dir, rev); err != nil {
		return daemon.Report{Revision: rev}, err
	}
	rep := daemon.Report{Revision: rev, Warnings: append([]string{}, r.warnings...), Routes: r.routeReports}

	live, err := r.sink.Observe(ctx)
	if err != nil {
		return rep, fmt.Errorf("observe swarm: %w", err)
	}
	rep.Observed = true
	desired, err := r.expandRoutes(ctx, live)
	if err != nil {
		rep.Stacks = stackReports(r.desired, live, r.instance)
		return rep, err
	}
	plan, err := reconcile.BuildPlan(desired, live, reconcile.Options{
		Instance: r.instance, Revision: rev,
		AllowMassDelete: r.flags.allowMassDelete, Adopt: r.flags.adopt,
	})
	rep.Stacks = stackReports(r.desired, live, r.instance)
	var massDelete *reconcile.MassDeleteError
	if err != nil && !errors.As(err, &massDelete) {
		return rep, fmt.Errorf("plan %s: %w", rev, err)
	}
	sinks := map[string]reconcile.Sink{r.sink.Name(): r.sink}
	r.routes.finish(&plan, sinks)
	rep.Plan = &plan
	rep.Warnings = append(rep.Warnings, plan.Warnings...)
	rep.Drift = daemon.DriftFromPlan(plan)
	if err != nil {
		return rep, fmt.Errorf("nothing applied: %w", err)
	}
	if !req.Apply || !plan.HasChanges() {
		return rep, nil
	}

	opts := reconcile.DefaultApplyOptions()
	opts.ConvergeTimeout = r.flags.timeout
	opts.StackDeps = plan.StackDeps
	opts.Logger = r.log
	opts.Progress = r.progress
	guarded := map[string]reconcile.Sink{}
	for name, s := range sinks {
		g := guardedSink{Sink: s, stop: req.Stop, leader: r.leader}
		if st, ok := s.(reconcile.StatusReader); ok {
			guarded[name] = &guardedStatusSink{guardedSink: g, status: st}
		} else {
			guarded[name] = &g
		}
	}
	res, applyErr := reconcile.Apply(ctx, plan, guarded, opts)
	rep.Result = &res
	// Health after the apply, not before it.
	if after, err := r.sink.Observe(ctx); err == nil {
		rep.Stacks = stackReports(r.desired, after, r.instance)
	}
	return rep, applyErr
}

// expandRoutes turns the desired routes into SLB listeners and groups against the
// observed swarm and adds SLB's live objects to live (routeStage.plan); it counts the SLB
// calls in the metrics.
func (r *reconciler) expandRoutes(ctx context.Context, live *resource.Set) (*resource.Set, error) {
	if r.routes.sink == nil {
		return r.desired, nil
	}
	before, _ := r.routes.sink.Stats()
	desired, err := r.routes.plan(ctx, r.cli, r.sink, r.desired, live)
	after, _ := r.routes.sink.Stats()
	r.metrics.AddAPIRequests("slb", "call", int(after-before))
	if err != nil {
		return nil, fmt.Errorf("slb: %w", err)
	}
	return desired, nil
}

// sourceFailed words a source error for status: nothing was applied and the last good
// revision stays.
func (r *reconciler) sourceFailed(err error) error {
	if r.revision != "" {
		return fmt.Errorf("source: %w (nothing applied; %s stays applied)", err, r.revision)
	}
	return fmt.Errorf("source: %w", err)
}

// load reads the manifests of rev unless they are already loaded.
func (r *reconciler) load(dir, rev string) error {
	if rev == r.revision && r.desired != nil {
		return nil
	}
	desired, problems := manifests.Load(dir, manifests.Options{Instance: r.instance, Revision: rev})
	var warnings, errs []string
	for _, p := range problems {
		if p.Severity == manifests.Warning {
			warnings = append(warnings, p.String())
		} else {
			errs = append(errs, p.String())
		}
	}
	if problems.HasErrors() {
		kept := ""
		if r.revision != "" {
			kept = "; " + r.revision + " stays applied"
		}
		return daemon.Stall(fmt.Errorf("revision %s does not validate, nothing applied%s:\n%w", rev, kept, problems))
	}
	for _, w := range warnings {
		r.log.Warn("source warning", "revision", rev, "warning", w)
	}
	r.routeReports = routeReports(desired, r.routes.sink != nil)
	if n := len(r.routeReports); n > 0 && r.routes.sink == nil {
		r.log.Warn("SLB routes not reconciled: no SLB is configured (set ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET or --slb-endpoint; see docs/routes.md)",
			"routes", n, "revision", rev)
	}
	r.revision, r.desired, r.warnings = rev, desired, warnings
	return nil
}

// routeReports lists desired's routes for status. Without an SLB sink they are removed
// from desired (planning them would promise what apply cannot do) and reported as not
// reconciled.
func routeReports(desired *resource.Set, reconciled bool) []daemon.RouteReport {
	var out []daemon.RouteReport
	for _, k := range desired.Keys() {
		res := desired.Resources[k]
		if k.Sink != resource.SinkSLB {
			continue
		}
		if !reconciled {
			delete(desired.Resources, k)
		}
		if res.Route == nil {
			continue
		}
		rt := res.Route
		out = append(out, daemon.RouteReport{
			Name: rt.Name, Key: k.String(), Stack: rt.Service.Stack, Service: rt.Service.ServiceName(),
			TargetPort: rt.Service.TargetPort, LoadBalancer: rt.LoadBalancer.ID,
			Listener: fmt.Sprintf("%s:%d", rt.Listener.Protocol, rt.Listener.Port), Reconciled: reconciled,
		})
	}
	return out
}

// stackReports lists each desired stack's services with their live health and the
// revision their labels carry.
func stackReports(desired, live *resource.Set, instance string) []daemon.StackReport {
	var out []daemon.StackReport
	for _, name := range desired.StackNames() {
		sr := daemon.StackReport{Name: name, Services: []daemon.ServiceReport{}}
		revisions := map[string]int{}
		for _, k := range desired.Keys() {
			d := desired.Resources[k]
			if d.Stack != name || d.Service == nil {
				continue
			}
			svc := daemon.ServiceReport{Name: k.Name, Health: reconcile.Unknown}
			if l, ok := live.Resources[k]; ok && l.Owner() == instance {
				svc.Health = reconcile.ServiceHealth(l.Status)
				if l.Status != nil {
					svc.RunningTasks, svc.DesiredTasks = l.Status.RunningTasks, l.Status.DesiredTasks
					svc.UpdateState, svc.UpdateMessage = l.Status.UpdateState, l.Status.UpdateMessage
				}
				if rev := l.Labels()[resource.LabelRevision]; rev != "" {
					revisions[rev]++
				}
			}
			sr.Services = append(sr.Services, svc)
		}
		sr.Revision = mostCommon(revisions)
		out = append(out, sr)
	}
	return out
}

func mostCommon(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best := ""
	for _, k := range keys {
		if counts[k] > counts[best] {
			best = k
		}
	}
	return best
}

// errStopping and errNotLeader refuse writes that would start after shutdown began or
// after this replica lost the lease.
var (
	errStopping  = errors.New("not applied: capstan is shutting down")
	errNotLeader = errors.New("not applied: this replica lost the leader lease")
)

// guardedSink lets the write in flight finish and refuses the ones after it once the
// loop is stopping or leadership is lost.
type guardedSink struct {
	reconcile.Sink
	stop   <-chan struct{}
	leader func() bool
}

// guardedStatusSink is a guardedSink whose sink reports service convergence (Swarm).
type guardedStatusSink struct {
	guardedSink
	status reconcile.StatusReader
}

var (
	_ reconcile.Sink         = (*guardedSink)(nil)
	_ reconcile.StatusReader = (*guardedStatusSink)(nil)
)

func (g *guardedSink) Apply(ctx context.Context, c reconcile.Change) error {
	select {
	case <-g.stop:
		return errStopping
	default:
	}
	if g.leader != nil && !g.leader() {
		return errNotLeader
	}
	return g.Sink.Apply(ctx, c)
}

// ServiceStatus stops apply's convergence wait at shutdown: the rollout goes on in
// Swarm, and the next capstan sees it.
func (g *guardedStatusSink) ServiceStatus(ctx context.Context, name string) (resource.ServiceStatus, error) {
	select {
	case <-g.stop:
		return resource.ServiceStatus{}, errStopping
	default:
	}
	return g.status.ServiceStatus(ctx, name)
}

// meteredDockerClient is a Docker client whose requests are counted in the metrics.
// base owns the transport and must be closed too.
func (a *app) meteredDockerClient(m *daemon.Metrics) (base, cli *client.Client, err error) {
	opts := []client.Opt{client.FromEnv}
	if a.dockerHost != "" {
		opts = append(opts, client.WithHost(a.dockerHost))
	}
	base, err = client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("docker client: %w", err)
	}
	hc := base.HTTPClient()
	hc.Transport = meteredTransport{next: hc.Transport, metrics: m, api: "docker"}
	opts = append(opts, client.WithAPIVersionNegotiation(), client.WithHTTPClient(hc))
	if os.Getenv(client.EnvOverrideCertPath) != "" {
		// With its own HTTP client the library cannot see the TLS config to pick https.
		opts = append(opts, client.WithScheme("https"))
	}
	cli, err = client.NewClientWithOpts(opts...)
	if err != nil {
		_ = base.Close()
		return nil, nil, fmt.Errorf("docker client: %w", err)
	}
	return base, cli, nil
}

// meteredTransport counts requests and failures (transport errors, 5xx, 429).
type meteredTransport struct {
	next    http.RoundTripper
	metrics *daemon.Metrics
	api     string
}

func (t meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	failed := err != nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	t.metrics.APIRequest(t.api, req.Method, failed)
	return resp, err
}
