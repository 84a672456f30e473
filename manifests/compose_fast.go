package manifests

import (
	"sync"

	interp "github.com/compose-spec/compose-go/v2/interpolation"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/paths"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
	yaml "go.yaml.in/yaml/v4"
)

// compose-go v2.16.2 matches every node it walks against every path pattern of a phase
// with tree.Path.Matches, which splits both paths with strings.Split on each comparison.
// Two of those walks cost about a third of a load and can be narrowed from the outside
// without changing what compose-go computes: the type casts of interpolation, and the
// resolution of relative paths. Everything else (interpolation itself, extends, merge,
// schema validation, canonical forms, normalization, binding) is compose-go's own code,
// run as it runs for docker compose. TestComposeNarrowedPhasesMatchComposeGo loads the
// same files both ways and compares the projects.

// composeCastRule is one of compose-go's interpolation type casts with its pattern split
// once: the literal keys it needs, and whether it ends in a wildcard.
type composeCastRule struct {
	pattern  tree.Path
	cast     interp.Cast
	literals []string // keys of the pattern other than * and []
	last     string   // the final key; "" when the pattern ends in * or []
}

// composeCastRules are compose-go's own casts, taken from the options it builds by
// default, so a compose-go upgrade that adds one is followed without a change here.
var composeCastRules = sync.OnceValue(func() []composeCastRule {
	opts := loader.ToOptions(&types.ConfigDetails{}, nil)
	var rules []composeCastRule
	for pattern, cast := range opts.Interpolate.TypeCastMapping {
		r := composeCastRule{pattern: pattern, cast: cast}
		parts := pattern.Parts()
		for _, p := range parts {
			if p != tree.PathMatchAll && p != tree.PathMatchList {
				r.literals = append(r.literals, p)
			}
		}
		if last := parts[len(parts)-1]; last != tree.PathMatchAll && last != tree.PathMatchList {
			r.last = last
		}
		rules = append(rules, r)
	}
	return rules
})

// composeKeyScan is what the cast narrowing needs to know about the input files: every
// mapping key, the keys that hold a value that may decode as a string, and whether an
// extends points into another file (whose keys are not scanned here).
type composeKeyScan struct {
	keys        map[string]bool
	stringKeys  map[string]bool
	extendsFile bool
	customTags  bool // !reset or !override, which compose-go resolves while parsing
}

func scanComposeKeys(docs []*composeDoc) composeKeyScan {
	s := composeKeyScan{keys: map[string]bool{}, stringKeys: map[string]bool{}}
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		if n.Tag == "!reset" || n.Tag == "!override" {
			s.customTags = true
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := composeDeref(n.Content[i]), composeDeref(n.Content[i+1])
				if k == nil {
					continue
				}
				s.keys[k.Value] = true
				if composeMayBeString(v) {
					s.stringKeys[k.Value] = true
				}
				if k.Value == "extends" && v != nil && v.Kind != yaml.ScalarNode {
					// extends: {file: ...} (or anything but the short same-file form)
					s.extendsFile = true
				}
				walk(n.Content[i])
				walk(n.Content[i+1])
			}
		case yaml.SequenceNode, yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.AliasNode:
			walk(n.Alias)
		}
	}
	for _, d := range docs {
		walk(d.root)
	}
	return s
}

// composeMayBeString reports whether a YAML value may decode to a string: any scalar
// that is not plainly a number, boolean or null, and anything whose tag is unusual.
func composeMayBeString(v *yaml.Node) bool {
	if v == nil || v.Kind != yaml.ScalarNode {
		return v != nil && v.Kind != yaml.MappingNode && v.Kind != yaml.SequenceNode
	}
	switch v.ShortTag() {
	case "!!int", "!!float", "!!bool", "!!null":
		return false
	}
	return true
}

// castMapping returns the subset of compose-go's interpolation casts that can apply to
// these files. compose-go looks a cast up for every string value it interpolates by
// trying each of its ~60 patterns in turn; a cast only ever applies to a string at a
// path whose keys all occur in the file, so the patterns whose keys do not occur, or
// whose final key never holds a string, are left out. compose-go then finds the same
// cast for every value (or none, as before) with a handful of comparisons.
//
// Files that extend services of another file get the whole table: that file's keys are
// not known here.
func (s composeKeyScan) castMapping() map[tree.Path]interp.Cast {
	out := map[tree.Path]interp.Cast{}
	for _, r := range composeCastRules() {
		if s.extendsFile || s.needs(r) {
			out[r.pattern] = r.cast
		}
	}
	return out
}

func (s composeKeyScan) needs(r composeCastRule) bool {
	for _, k := range r.literals {
		if !s.keys[k] {
			return false
		}
	}
	return r.last == "" || s.stringKeys[r.last]
}

// composePathKeys are the keys of a service (or job) under which compose-go's relative
// path resolution (paths.ResolveRelativePaths) has a rule, and composePathSections the
// top-level sections it has rules for.
var (
	composePathKeys     = []string{"build", "env_file", "label_file", "extends", "develop", "volumes", "pre_start"}
	composePathSections = []string{"configs", "secrets", "include", "volumes"}
)

// resolveComposePaths is compose-go's relative path resolution applied to the parts of
// the model it has rules for. compose-go walks the whole model and compares every node
// with every rule; handing it only the subtrees a rule can match gives the same result
// for a small part of the work. The subtrees are shared, not copied, so what the
// resolvers change in place is changed in dict; values they replace are written back.
func resolveComposePaths(dict map[string]any, workingDir string, remotes []paths.RemoteResource) error {
	view := map[string]any{}
	for _, section := range composePathSections {
		if v, ok := dict[section]; ok {
			view[section] = v
		}
	}
	type entry struct {
		container map[string]any
		view      map[string]any
	}
	var entries []entry
	for _, section := range []string{"services", "jobs"} {
		containers, ok := dict[section].(map[string]any)
		if !ok {
			if v, present := dict[section]; present {
				view[section] = v // not a mapping: walked as compose-go walks it
			}
			continue
		}
		sv := make(map[string]any, len(containers))
		for name, c := range containers {
			m, ok := c.(map[string]any)
			if !ok {
				sv[name] = c
				continue
			}
			cv := map[string]any{}
			for _, k := range composePathKeys {
				if v, ok := m[k]; ok {
					cv[k] = v
				}
			}
			sv[name] = cv
			entries = append(entries, entry{container: m, view: cv})
		}
		view[section] = sv
	}
	if err := paths.ResolveRelativePaths(view, workingDir, remotes); err != nil {
		return err
	}
	for _, section := range composePathSections {
		if v, ok := view[section]; ok {
			dict[section] = v
		}
	}
	for _, e := range entries {
		for k, v := range e.view {
			e.container[k] = v
		}
	}
	return nil
}
