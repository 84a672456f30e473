package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	"github.com/capstan-dev/capstan/source"
)

// offlinePlan plans the desired state at head against the desired state at base, both
// read from the local Git repository holding the --source directory: what a pull request
// changes, with no cluster to ask. The base stands in for the live state as if capstan had
// applied it, so every object in it counts as owned and unchanged.
func (a *app) offlinePlan(f planFlags, base, head string) (reconcile.Plan, error) {
	if strings.Contains(f.source, "://") || strings.HasPrefix(f.source, "git@") {
		return reconcile.Plan{}, fmt.Errorf("--base/--head read a local checkout; %q is a URL: clone it and pass the directory", f.source)
	}
	if f.path != "" && !filepath.IsLocal(f.path) {
		return reconcile.Plan{}, fmt.Errorf("--path %q must be a relative path inside the source", f.path)
	}
	sub, err := source.RepoPath(f.source)
	if err != nil {
		return reconcile.Plan{}, err
	}
	sub = filepath.Join(filepath.FromSlash(sub), filepath.FromSlash(f.path))

	load := func(rev string) (*resource.Set, string, error) {
		dir, err := os.MkdirTemp("", "capstan-rev-")
		if err != nil {
			return nil, "", err
		}
		defer os.RemoveAll(dir)
		r, err := source.ExportRevision(f.source, rev, dir)
		if err != nil {
			return nil, "", err
		}
		root := filepath.Join(dir, sub)
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			// A path that does not exist at this revision holds no manifests (yet, or
			// any more): an empty desired state.
			return resource.NewSet(), r.String(), nil
		}
		set, problems := manifests.Load(root, manifests.Options{Instance: a.instance, Revision: r.String()})
		for _, p := range problems {
			if p.Severity == manifests.Warning {
				fmt.Fprintf(a.stderr, "%s: %s\n", rev, p)
			}
		}
		if problems.HasErrors() {
			return nil, "", fmt.Errorf("%s does not validate; nothing was planned:\n%s", rev, errorsOnly(problems))
		}
		return set, r.String(), nil
	}
	baseSet, _, err := load(base)
	if err != nil {
		return reconcile.Plan{}, err
	}
	headSet, headRev, err := load(head)
	if err != nil {
		return reconcile.Plan{}, err
	}
	// Routes carry no labels; as applied by this instance they would be its own.
	for k, r := range baseSet.Resources {
		if r.Route != nil {
			r.ManagedBy = a.instance
			baseSet.Resources[k] = r
		}
	}
	// Externals live outside the source; offline there is nothing to check them against.
	for k, r := range headSet.Resources {
		if r.External {
			if _, ok := baseSet.Resources[k]; !ok {
				baseSet.Resources[k] = r
			}
		}
	}
	plan, err := reconcile.BuildPlan(headSet, baseSet, reconcile.Options{
		Instance:        a.instance,
		Revision:        headRev,
		AllowMassDelete: true, // a pull request may remove stacks; apply still guards
	})
	return plan, err
}

func errorsOnly(problems manifests.Problems) string {
	var lines []string
	for _, p := range problems {
		if p.Severity != manifests.Warning {
			lines = append(lines, p.String())
		}
	}
	return strings.Join(lines, "\n")
}
