package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/resource"
)

func init() { commands = append(commands, newValidateCmd) }

// validateReport is the JSON output of `capstan validate -o json`. Its shape is part
// of the CLI contract (docs/manifests.md).
type validateReport struct {
	Valid    bool                `json:"valid"`
	Path     string              `json:"path"`
	Stacks   int                 `json:"stacks"`
	Services int                 `json:"services"`
	Routes   int                 `json:"routes"`
	Errors   int                 `json:"errors"`
	Warnings int                 `json:"warnings"`
	Problems []manifests.Problem `json:"problems"`
}

func newValidateCmd(a *app) *cobra.Command {
	var path, output string
	cmd := &cobra.Command{
		Use:   "validate [--path DIR]",
		Short: "Check a source tree offline: every manifest, compose file, bundle and route",
		Long: `Validate loads the manifests under --path exactly as diff and apply would, without
contacting Docker or SLB, and prints every problem as file:line: message.
Warnings are shown but do not fail validation.

Exit status: 0 when the tree is valid, 1 when it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return &exitError{code: 1, err: fmt.Errorf("-o %q: want text or json", output)}
			}
			set, problems := manifests.Load(path, manifests.Options{Instance: a.instance})
			r := summarize(path, set, problems)
			var err error
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(r)
			} else {
				err = printValidateText(a.stdout, r)
			}
			if err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			if !r.Valid {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "path", ".", "directory holding the manifests")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// summarize counts what loaded. Problem files are made relative to the current
// directory rather than to --path, so editors and CI annotations can open them.
func summarize(path string, set *resource.Set, problems manifests.Problems) validateReport {
	r := validateReport{Valid: !problems.HasErrors(), Path: path, Problems: manifests.Problems{}}
	for _, p := range problems {
		if p.File != "" {
			p.File = filepath.ToSlash(filepath.Join(path, filepath.FromSlash(p.File)))
		}
		r.Problems = append(r.Problems, p)
		if p.Severity == manifests.Warning {
			r.Warnings++
		} else {
			r.Errors++
		}
	}
	if set != nil {
		r.Stacks = len(set.Stacks)
		for k := range set.Resources {
			switch {
			case k.Sink == resource.SinkSwarm && k.Kind == resource.KindService:
				r.Services++
			case k.Sink == resource.SinkSLB && k.Kind == resource.KindListener:
				r.Routes++
			}
		}
	}
	return r
}

func printValidateText(w io.Writer, r validateReport) error {
	for _, p := range r.Problems {
		if _, err := fmt.Fprintln(w, p.String()); err != nil {
			return err
		}
	}
	var err error
	if r.Valid {
		_, err = fmt.Fprintf(w, "%s is valid: %s, %s, %s%s\n", r.Path,
			plural(r.Stacks, "stack"), plural(r.Services, "service"), plural(r.Routes, "route"), warningsSuffix(r.Warnings))
	} else {
		_, err = fmt.Fprintf(w, "%s is not valid: %s%s\n", r.Path, plural(r.Errors, "error"), warningsSuffix(r.Warnings))
	}
	return err
}

func warningsSuffix(n int) string {
	if n == 0 {
		return ""
	}
	return " (" + plural(n, "warning") + ")"
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
