package manifests

import "github.com/capstan-dev/capstan/resource"

// composeInput is what a Stack document says about its compose files, already resolved:
// paths are absolute and checked to stay inside the source root.
type composeInput struct {
	Stack string
	Root  string            // absolute source root; Problem.File is relative to it
	Files []string          // absolute paths, merged in order
	Env   map[string]string // spec.variables over envFiles; never the process environment
}

// loadCompose loads and converts one stack's compose files into Swarm resources:
// services, networks, secrets and configs, external ones marked External.
func loadCompose(in composeInput) ([]resource.Resource, Problems) {
	panic("TODO: compose loading")
}
