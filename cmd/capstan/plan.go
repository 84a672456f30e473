package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
	"github.com/capstan-dev/capstan/source"
)

// sourceFlags are the flags that say where the desired state comes from: a local
// directory, or a Git URL with its ref, cache and credentials (source package, docs/sources.md).
type sourceFlags struct {
	source string
	ref    string
	path   string

	cacheDir                    string
	gitUsername                 string
	gitPasswordFile             string
	gitSSHKeyFile               string
	gitSSHKeyPassphraseFile     string
	gitKnownHostsFile           string
	gitInsecureSkipHostKeyCheck bool
	gitAllowRewrite             bool
}

func (f *sourceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "the source: a local directory, or a Git URL (https://, ssh://, git@host:path, file://)")
	fl.StringVar(&f.ref, "ref", "", "branch, tag, full ref or full commit id of a Git source (default: the remote's default branch)")
	fl.StringVar(&f.path, "path", "", "subdirectory of the source that holds the manifests")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "where Git sources are cached between runs (default: the user cache directory + /capstan)")
	fl.StringVar(&f.gitUsername, "git-username", "", "HTTPS user name for a Git source (also $CAPSTAN_GIT_USERNAME)")
	fl.StringVar(&f.gitPasswordFile, "git-password-file", "", "file holding the HTTPS password or token (also $CAPSTAN_GIT_PASSWORD, $CAPSTAN_GIT_PASSWORD_FILE)")
	fl.StringVar(&f.gitSSHKeyFile, "git-ssh-key-file", "", "SSH private key for ssh:// and git@host:path URLs (also $CAPSTAN_GIT_SSH_KEY, $CAPSTAN_GIT_SSH_KEY_FILE)")
	fl.StringVar(&f.gitSSHKeyPassphraseFile, "git-ssh-key-passphrase-file", "", "file holding the SSH key's passphrase (also $CAPSTAN_GIT_SSH_KEY_PASSPHRASE, $CAPSTAN_GIT_SSH_KEY_PASSPHRASE_FILE)")
	fl.StringVar(&f.gitKnownHostsFile, "git-known-hosts-file", "", "known_hosts file to verify the SSH server against (also $CAPSTAN_GIT_KNOWN_HOSTS, $CAPSTAN_GIT_KNOWN_HOSTS_FILE; default ~/.ssh/known_hosts)")
	fl.BoolVar(&f.gitInsecureSkipHostKeyCheck, "git-insecure-skip-host-key-check", false, "accept any SSH host key (insecure; logs a warning)")
	fl.BoolVar(&f.gitAllowRewrite, "git-allow-rewrite", false, "follow a force-pushed branch or a moved tag instead of failing")
	_ = cmd.MarkFlagRequired("source")
}

// options turns the flags into source.Options, reading every secret from its flag's
// file, its CAPSTAN_* variable or that variable's _FILE path.
func (f *sourceFlags) options(log *slog.Logger) (source.Options, error) {
	opts := source.Options{
		Source:       f.source,
		Ref:          f.ref,
		Path:         f.path,
		CacheDir:     f.cacheDir,
		AllowRewrite: f.gitAllowRewrite,
		Logger:       log,
		Auth: source.Auth{
			Username:                 f.gitUsername,
			InsecureSkipHostKeyCheck: f.gitInsecureSkipHostKeyCheck,
		},
	}
	if opts.Auth.Username == "" {
		opts.Auth.Username = os.Getenv("CAPSTAN_GIT_USERNAME")
	}
	var err error
	if opts.Auth.Password, err = source.ReadSecretText("git-password-file", f.gitPasswordFile, "CAPSTAN_GIT_PASSWORD"); err != nil {
		return source.Options{}, err
	}
	if opts.Auth.SSHKey, err = source.ReadSecret("git-ssh-key-file", f.gitSSHKeyFile, "CAPSTAN_GIT_SSH_KEY"); err != nil {
		return source.Options{}, err
	}
	if opts.Auth.SSHKeyPassphrase, err = source.ReadSecretText("git-ssh-key-passphrase-file", f.gitSSHKeyPassphraseFile, "CAPSTAN_GIT_SSH_KEY_PASSPHRASE"); err != nil {
		return source.Options{}, err
	}
	if opts.Auth.KnownHosts, err = source.ReadSecret("git-known-hosts-file", f.gitKnownHostsFile, "CAPSTAN_GIT_KNOWN_HOSTS"); err != nil {
		return source.Options{}, err
	}
	if !source.IsGitURL(f.source) {
		// Credentials in the environment are for Git sources; a local directory
		// ignores them rather than failing (only explicit flags are an error).
		if f.gitUsername == "" && f.gitPasswordFile == "" && f.gitSSHKeyFile == "" && f.gitSSHKeyPassphraseFile == "" &&
			f.gitKnownHostsFile == "" && !f.gitInsecureSkipHostKeyCheck {
			opts.Auth = source.Auth{}
		}
	}
	return opts, nil
}

// snapshot is one loaded source: where its files are and which revision they are.
type snapshot struct {
	dir      string
	revision string
}

// resolve fetches the source (a Git source: only what its cache lacks) and returns the
// directory of manifests. Source warnings (an insecure SSH setting, a skipped symlink) go
// to stderr.
func (f *sourceFlags) resolve(ctx context.Context, stderr io.Writer) (snapshot, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts, err := f.options(log)
	if err != nil {
		return snapshot{}, err
	}
	src, err := source.New(opts)
	if err != nil {
		return snapshot{}, err
	}
	snap, err := src.Fetch(ctx)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{dir: snap.Dir, revision: snap.Revision.String()}, nil
}

// planFlags are shared by diff and apply.
type planFlags struct {
	sourceFlags
	allowMassDelete bool
	adopt           bool
	slb             slbFlags // SLB routes: cmd/capstan/slb.go
}

func (f *planFlags) register(cmd *cobra.Command) {
	f.sourceFlags.register(cmd)
	f.slb.register(cmd)
	cmd.Flags().BoolVar(&f.allowMassDelete, "allow-mass-delete", false, "allow a plan that deletes more than half of the owned services")
	cmd.Flags().BoolVar(&f.adopt, "adopt", false, "take over existing objects with the same names that capstan does not own")
}

// planned is everything one plan needs downstream: the plan itself, the sinks that
// observed the live state, and the desired set it came from.
type planned struct {
	plan    reconcile.Plan
	desired *resource.Set
	// live is what was observed, with the services' task counts.
	live  *resource.Set
	sinks map[string]reconcile.Sink
	close func()
	// refused is set when the plan must not be applied (the mass-delete guard).
	refused error
}

// buildPlan loads the source, observes the live state and plans. Warnings are printed to
// stderr; a source with errors plans nothing.
func (a *app) buildPlan(ctx context.Context, f planFlags) (*planned, error) {
	snap, err := f.resolve(ctx, a.stderr)
	if err != nil {
		return nil, err
	}
	desired, problems := manifests.Load(snap.dir, manifests.Options{Instance: a.instance, Revision: snap.revision})
	for _, p := range problems {
		if p.Severity == manifests.Warning {
			fmt.Fprintln(a.stderr, p.String())
		}
	}
	if problems.HasErrors() {
		var errs []string
		for _, p := range problems {
			if p.Severity != manifests.Warning {
				errs = append(errs, p.String())
			}
		}
		return nil, fmt.Errorf("the source does not validate; nothing was planned or applied:\n%s", strings.Join(errs, "\n"))
	}
	// SLB routes (cmd/capstan/slb.go): dropped with a warning when no SLB is configured.
	routes, err := a.newRouteStage(f.slb, desired)
	if err != nil {
		return nil, err
	}

	cli, err := a.dockerClient()
	if err != nil {
		return nil, err
	}
	sink := swarmsink.New(cli, a.instance)
	sink.OnWarning(func(k resource.Key, w string) { fmt.Fprintf(a.stderr, "warning: %s: %s\n", k, w) })
	live, err := sink.Observe(ctx)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("observe swarm: %w", err)
	}
	if desired, err = routes.plan(ctx, cli, sink, desired, live); err != nil {
		cli.Close()
		return nil, err
	}
	plan, err := reconcile.BuildPlan(desired, live, reconcile.Options{
		Instance:        a.instance,
		Revision:        snap.revision,
		AllowMassDelete: f.allowMassDelete,
		Adopt:           f.adopt,
	})
	var massDelete *reconcile.MassDeleteError
	if err != nil && !errors.As(err, &massDelete) {
		cli.Close()
		return nil, err
	}
	sinks := map[string]reconcile.Sink{sink.Name(): sink}
	routes.finish(&plan, sinks)
	// A refused mass delete still yields the plan, so the user sees what was refused.
	return &planned{
		plan:    plan,
		desired: desired,
		live:    live,
		sinks:   sinks,
		close:   func() { cli.Close() },
		refused: err,
	}, nil
}

func (a *app) dockerClient() (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if a.dockerHost != "" {
		opts = append(opts, client.WithHost(a.dockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// stackDeps maps each stack to the stacks it depends on.
func stackDeps(s *resource.Set) map[string][]string {
	deps := map[string][]string{}
	for name, st := range s.Stacks {
		if len(st.DependsOn) > 0 {
			deps[name] = st.DependsOn
		}
	}
	return deps
}
