package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// sourceFlags are the flags that say where the desired state comes from.
type sourceFlags struct {
	source string
	ref    string
	path   string
}

func (f *sourceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.source, "source", "", "the source: a local directory (Git URLs arrive with the Git source)")
	cmd.Flags().StringVar(&f.ref, "ref", "", "branch, tag or commit of a Git source")
	cmd.Flags().StringVar(&f.path, "path", "", "subdirectory of the source that holds the manifests")
	_ = cmd.MarkFlagRequired("source")
}

// snapshot is one loaded source: where its files are and which revision they are.
type snapshot struct {
	dir      string
	revision string
}

// resolve turns the source flags into a directory of manifests.
func (f *sourceFlags) resolve() (snapshot, error) {
	src := f.source
	if strings.Contains(src, "://") || strings.HasPrefix(src, "git@") {
		return snapshot{}, fmt.Errorf("source %q: Git sources are not supported by this build yet; pass a local directory (a checkout)", src)
	}
	if f.ref != "" {
		return snapshot{}, fmt.Errorf("--ref applies to Git sources only; %q is a local directory", src)
	}
	dir := src
	if f.path != "" {
		if filepath.IsAbs(f.path) || strings.HasPrefix(filepath.Clean(f.path), "..") {
			return snapshot{}, fmt.Errorf("--path %q must be a relative path inside the source", f.path)
		}
		dir = filepath.Join(src, f.path)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return snapshot{}, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return snapshot{}, fmt.Errorf("source %s is not a directory", dir)
	}
	return snapshot{dir: dir}, nil
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
	sinks   map[string]reconcile.Sink
	close   func()
	// refused is set when the plan must not be applied (the mass-delete guard).
	refused error
}

// buildPlan loads the source, observes the live state and plans. Warnings are printed to
// stderr; a source with errors plans nothing.
func (a *app) buildPlan(ctx context.Context, f planFlags) (*planned, error) {
	snap, err := f.resolve()
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
