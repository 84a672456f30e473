package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/reconcile"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
	"github.com/capstan-dev/capstan/source"
)

func init() { commands = append(commands, newRunCmd) }

// runFlags are capstan run's flags beyond the plan flags.
type runFlags struct {
	planFlags
	interval          time.Duration
	listen            string
	once              bool
	apiTokenFile      string
	webhookSecretFile string
	notifyURLs        []string
	timeout           time.Duration
	progressDeadline  time.Duration
	leaderElect       bool
	leaseDuration     time.Duration
	watchInterval     time.Duration
	logFormat         string
	logLevel          string
}

func newRunCmd(a *app) *cobra.Command {
	f := runFlags{
		interval:      time.Minute,
		listen:        ":9090",
		timeout:       reconcile.DefaultApplyOptions().ConvergeTimeout,
		leaderElect:   true,
		leaseDuration: 30 * time.Second,
		watchInterval: 2 * time.Second,
		logFormat:     "auto",
		logLevel:      "info",
	}
	cmd := &cobra.Command{
		Use:   "run --source SRC [--interval 60s] [--listen :9090] [--once]",
		Short: "Reconcile continuously and serve status, metrics and webhooks",
		Long: `run keeps the swarm equal to the source: it reconciles at once, then every --interval
(with jitter), on every webhook push, on POST /api/v1/sync and, for a local directory,
whenever a file changes. One reconcile runs at a time.

Errors say what happens next: stalled (a human must act: invalid manifests, an object
owned by someone else, a refused mass delete, a rolled-back update) waits for a new
revision; waiting (a rollout still converging) looks again shortly; transient (the
engine or Git server unreachable) retries with exponential backoff. A source that fails
to load leaves the last good revision applied.

HTTP (--listen): / (status page), /healthz, /readyz, /metrics, /api/v1/status,
POST /api/v1/sync (bearer token from --api-token-file), POST /webhook/{github,gitlab,
gitea,generic} (secret from --webhook-secret-file).

Several replicas may run: they elect a leader through a lease on a Swarm config object
(capstan-lease-<instance>); only the leader writes, the others serve status.

--once reconciles a single time, like apply, and exits: 0 when it succeeded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), f)
		},
	}
	f.planFlags.register(cmd)
	fl := cmd.Flags()
	fl.DurationVar(&f.interval, "interval", f.interval, "time between reconciles when nothing triggers one")
	fl.StringVar(&f.listen, "listen", f.listen, "address of the HTTP API and status page (empty: no HTTP)")
	fl.BoolVar(&f.once, "once", false, "reconcile once and exit")
	fl.StringVar(&f.apiTokenFile, "api-token-file", "", "file holding the bearer token of POST /api/v1/sync (or $CAPSTAN_API_TOKEN, $CAPSTAN_API_TOKEN_FILE)")
	fl.StringVar(&f.webhookSecretFile, "webhook-secret-file", "", "file holding the webhook secret (or $CAPSTAN_WEBHOOK_SECRET, $CAPSTAN_WEBHOOK_SECRET_FILE)")
	fl.StringArrayVar(&f.notifyURLs, "notify-url", nil, "send failure, drift and recovery notices to this URL (repeatable; slack+https://... or hooks.slack.com for Slack's payload)")
	fl.DurationVar(&f.timeout, "timeout", f.timeout, "how long to wait for each service to converge (0: do not wait)")
	fl.DurationVar(&f.progressDeadline, "progress-deadline", 10*time.Minute, "how long a service may run fewer tasks than desired, with no rollout under way, before status calls it Degraded")
	fl.BoolVar(&f.leaderElect, "leader-elect", f.leaderElect, "elect a leader among replicas through a lease in Swarm; only the leader writes")
	fl.DurationVar(&f.leaseDuration, "lease-duration", f.leaseDuration, "how long the leader lease lasts without renewal (renewed every third)")
	fl.DurationVar(&f.watchInterval, "watch-interval", f.watchInterval, "how often a local directory source is checked for changed files")
	fl.StringVar(&f.logFormat, "log-format", f.logFormat, "log format: json, text, or auto (json unless stderr is a terminal)")
	fl.StringVar(&f.logLevel, "log-level", f.logLevel, "log level: debug, info, warn, error")
	return cmd
}

// newLogger builds the daemon's logger on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "auto":
		if isTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json, text or auto", format)
}

// holderID names this replica in the lease: the host name (a container ID under Swarm)
// and a random suffix, so two processes on one host differ.
func holderID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "capstan"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func (a *app) run(ctx context.Context, f runFlags) error {
	log, err := newLogger(a.stderr, f.logFormat, f.logLevel)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if f.interval < time.Second {
		return &exitError{code: 1, err: fmt.Errorf("--interval %s is too short; use 1s or more", f.interval)}
	}
	apiToken, err := source.ReadSecretText("api-token-file", f.apiTokenFile, "CAPSTAN_API_TOKEN")
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	webhookSecret, err := source.ReadSecret("webhook-secret-file", f.webhookSecretFile, "CAPSTAN_WEBHOOK_SECRET")
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	webhookSecret = []byte(strings.TrimRight(string(webhookSecret), "\r\n"))

	metrics := daemon.NewMetrics()
	r, err := a.newReconciler(f, log, metrics)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer r.close()

	holder := holderID()
	cfg := daemon.Config{
		Reconcile: r.reconcile,
		Instance:  a.instanceName(),
		Holder:    holder,
		Interval:  f.interval,
		Classify:  classifyError,
		Head:      r.head,
		Metrics:   metrics,
		Logger:    log,

		ProgressDeadline: f.progressDeadline,
	}
	if f.once {
		if f.apiTokenFile != "" || f.webhookSecretFile != "" || len(f.notifyURLs) > 0 {
			log.Warn("--once ignores --api-token-file, --webhook-secret-file and --notify-url")
		}
		r.progress = a.stdout
		loop := daemon.New(cfg)
		err := loop.Once(ctx)
		st := loop.Status()
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%s: %w", daemon.ClassOf(err), err)}
		}
		fmt.Fprintf(a.stdout, "Reconciled %s.\n", st.Revision)
		return nil
	}

	notifier, err := daemon.NewNotifier(f.notifyURLs, daemon.NotifierOptions{Instance: cfg.Instance, Logger: log, Metrics: metrics})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	cfg.Notifier = notifier

	var loop *daemon.Loop
	var elector *daemon.Elector
	if f.leaderElect {
		lease := swarmsink.NewLease(r.cli, cfg.Instance, holder, f.leaseDuration)
		elector = daemon.NewElector(lease, daemon.ElectorOptions{
			Duration: f.leaseDuration, Logger: log, Metrics: metrics,
			OnChange: func(leader bool) {
				if leader && loop != nil {
					loop.Trigger("leader")
				}
			},
		})
		cfg.Leadership = elector
		r.leader = elector.IsLeader
	}
	loop = daemon.New(cfg)

	var hooks http.Handler
	if len(webhookSecret) > 0 {
		if !source.IsGitURL(f.source) {
			log.Warn("--webhook-secret-file is set but the source is a local directory: webhooks would have nothing to poll; file changes trigger reconciles instead")
		}
		hooks = source.NewWebhooks(source.WebhookOptions{
			Secret: webhookSecret, Ref: f.ref, Logger: log,
			Trigger: func(source.Push) { loop.Trigger("webhook") },
		})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--listen %s: %w", f.listen, err)}
		}
		srv := daemon.NewServer(loop, daemon.ServerOptions{APIToken: apiToken, Webhooks: hooks, Metrics: metrics, Logger: log})
		log.Info("serving HTTP", "address", ln.Addr().String())
		a.listening(ln.Addr())
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				select {
				case errc <- err:
				default:
				}
				cancel()
			}
		})
	}
	if elector != nil {
		wg.Go(func() { elector.Run(ctx) })
	}
	wg.Go(func() { notifier.Run(ctx) })
	if !source.IsGitURL(f.source) && f.watchInterval > 0 {
		w := newDirWatcher(r.watchDir(), f.watchInterval, log)
		wg.Go(func() { w.run(ctx, func() { loop.Trigger("file") }) })
	}
	log.Info("capstan run", "version", version, "instance", cfg.Instance, "holder", holder, "source", r.src.String(),
		"interval", f.interval.String(), "leader_elect", f.leaderElect)
	runErr := loop.Run(ctx)
	cancel()
	wg.Wait()
	log.Info("stopped")
	select {
	case err := <-errc:
		return &exitError{code: 1, err: err}
	default:
	}
	if runErr != nil {
		return &exitError{code: 1, err: runErr}
	}
	return nil
}

// instanceName is --instance with its default applied.
func (a *app) instanceName() string {
	if a.instance == "" {
		return "capstan"
	}
	return a.instance
}

// listenHook is a test hook: tests that pass --listen 127.0.0.1:0 learn the port here.
var listenHook func(net.Addr)

func (a *app) listening(addr net.Addr) {
	if listenHook != nil {
		listenHook(addr)
	}
}

// classifyError names the class of the errors capstan knows. Everything else is
// transient.
func classifyError(err error) daemon.Class {
	var (
		conflict   *reconcile.ConflictError
		massDelete *reconcile.MassDeleteError
		missing    *reconcile.MissingExternalError
		cycle      *reconcile.CycleError
		srcErr     *source.Error
	)
	switch {
	case errors.As(err, &conflict), errors.As(err, &massDelete), errors.As(err, &missing), errors.As(err, &cycle):
		return daemon.Stalled
	case errors.Is(err, reconcile.ErrRolledBack):
		// Retrying would roll the same spec out and back again.
		return daemon.Stalled
	case errors.Is(err, reconcile.ErrNotConverged):
		return daemon.Waiting
	case errors.As(err, &srcErr):
		if errors.Is(err, source.ErrUnreachable) {
			return daemon.Transient
		}
		return daemon.Stalled
	}
	return ""
}
