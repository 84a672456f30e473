package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

type writer = io.Writer

func init() { commands = append(commands, newApplyCmd) }

func newApplyCmd(a *app) *cobra.Command {
	var f planFlags
	var timeout = reconcile.DefaultApplyOptions().ConvergeTimeout
	cmd := &cobra.Command{
		Use:   "apply --source SRC [--allow-mass-delete] [--adopt]",
		Short: "Make the live Swarm match the source",
		Long: `apply plans like diff, prints the plan, then carries it out: networks, secrets and
configs first, then services (waiting for each rollout to converge), then deletions in
reverse order. A source that does not validate applies nothing. A plan that would delete
more than half of the services capstan owns is refused unless --allow-mass-delete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.buildPlan(cmd.Context(), f)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			defer p.close()
			if err := reconcile.RenderText(a.stdout, p.plan); err != nil {
				return &exitError{code: 1, err: err}
			}
			if p.refused != nil {
				return &exitError{code: 1, err: fmt.Errorf("nothing applied: %w", p.refused)}
			}
			if !p.plan.HasChanges() {
				warnUnhealthy(a.stderr, p.desired, p.live)
				return nil
			}
			fmt.Fprintln(a.stdout)
			opts := reconcile.DefaultApplyOptions()
			opts.ConvergeTimeout = timeout
			opts.Progress = a.stdout
			opts.TTY = isTerminal(a.stdout)
			opts.StackDeps = stackDeps(p.desired)
			res, err := reconcile.Apply(cmd.Context(), p.plan, p.sinks, opts)
			add, change, destroy := appliedCounts(res)
			if err != nil {
				fmt.Fprintf(a.stdout, "\nApply failed: %d added, %d changed, %d destroyed; %d change(s) not applied.\n",
					add, change, destroy, len(res.Failed()))
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintf(a.stdout, "\nApply complete! %d added, %d changed, %d destroyed.\n", add, change, destroy)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long to wait for each service to converge (0: do not wait)")
	return cmd
}

// warnUnhealthy names the desired services that run but are not healthy when apply has
// nothing to change: "No changes" must not read as "all is well" when, say, Swarm gave up
// restarting a service's failing tasks. The plan cannot fix that; the user must look.
func warnUnhealthy(w io.Writer, desired, live *resource.Set) {
	for _, k := range desired.Keys() {
		if k.Sink != resource.SinkSwarm || k.Kind != resource.KindService {
			continue
		}
		l, ok := live.Get(k)
		if !ok {
			continue
		}
		h := reconcile.ServiceHealth(l.Status)
		if h == reconcile.Healthy {
			continue
		}
		fmt.Fprintf(w, "warning: service %s is %s: %s; see docker service ps %s\n", k.Name, h, reconcile.DescribeTasks(l.Status), k.Name)
	}
}

// appliedCounts counts what was actually applied, in Terraform's terms.
func appliedCounts(res reconcile.Result) (add, change, destroy int) {
	for _, r := range res.Changes {
		if r.Outcome != reconcile.Applied {
			continue
		}
		switch r.Change.Action {
		case reconcile.Create:
			add++
		case reconcile.Update, reconcile.Scale:
			change++
		case reconcile.Replace:
			add++
			destroy++
		case reconcile.Delete:
			destroy++
		}
	}
	return add, change, destroy
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
