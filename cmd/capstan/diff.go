package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/reconcile"
)

func init() { commands = append(commands, newDiffCmd) }

func newDiffCmd(a *app) *cobra.Command {
	var f planFlags
	var output string
	var detailed bool
	var base, head string
	cmd := &cobra.Command{
		Use:   "diff --source SRC [-o text|markdown|json] [--detailed-exitcode] [--base REV --head REV]",
		Short: "Show the plan the source would cause; changes nothing",
		Long: `diff loads the source, reads the live Swarm and prints the plan: what apply would
create, update, scale, replace or delete, with field-level differences and drift.

With --detailed-exitcode the exit code is 0 when there are no changes, 2 when there are
changes and 1 on error (Terraform's contract).

With --base and --head, diff needs no cluster: it plans the manifests at revision head
of the local Git checkout holding --source against those at revision base, as if base
were applied (a pull request's effect; any revisions git can name: origin/main, HEAD, a
tag or a commit id).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			render, err := renderer(output)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if (base == "") != (head == "") {
				return &exitError{code: 1, err: fmt.Errorf("--base and --head go together")}
			}
			var plan reconcile.Plan
			if base != "" {
				if plan, err = a.offlinePlan(f, base, head); err != nil {
					return &exitError{code: 1, err: err}
				}
			} else {
				p, err := a.buildPlan(cmd.Context(), f)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				defer p.close()
				if p.refused != nil {
					// Show what was refused, then fail.
					_ = render(a.stdout, p.plan)
					return &exitError{code: 1, err: p.refused}
				}
				plan = p.plan
			}
			if err := render(a.stdout, plan); err != nil {
				return &exitError{code: 1, err: err}
			}
			if detailed && plan.HasChanges() {
				return &exitError{code: 2}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "plan format: text, markdown or json")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when the plan has changes, 0 when it has none, 1 on error")
	cmd.Flags().StringVar(&base, "base", "", "offline: the revision to plan from (with --head; no cluster needed)")
	cmd.Flags().StringVar(&head, "head", "", "offline: the revision to plan to (with --base)")
	return cmd
}

func renderer(format string) (func(w writer, p reconcile.Plan) error, error) {
	switch format {
	case "text", "":
		return func(w writer, p reconcile.Plan) error { return reconcile.RenderText(w, p) }, nil
	case "markdown", "md":
		return func(w writer, p reconcile.Plan) error { return reconcile.RenderMarkdown(w, p) }, nil
	case "json":
		return func(w writer, p reconcile.Plan) error { return reconcile.RenderJSON(w, p) }, nil
	}
	return nil, fmt.Errorf("unknown output format %q: use text, markdown or json", format)
}
