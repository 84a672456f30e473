package manifests

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/capstan-dev/capstan/resource"
)

// APIVersion is the only apiVersion capstan reads.
const APIVersion = "capstan.dev/v1alpha1"

// Document kinds.
const (
	KindStack = "Stack"
	KindRoute = "Route"
)

// objectMeta is a document's metadata. Labels and annotations are accepted for the
// author's own bookkeeping and otherwise ignored.
type objectMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// stackDocument is a Stack document: one Swarm stack from compose files or a bundle.
type stackDocument struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       stackSpec  `json:"spec"`
}

type stackSpec struct {
	Compose      []string          `json:"compose,omitempty"`
	Bundle       string            `json:"bundle,omitempty"`
	Variables    map[string]string `json:"variables,omitempty"`
	EnvFiles     []string          `json:"envFiles,omitempty"`
	Prune        *bool             `json:"prune,omitempty"`
	SelfHeal     *bool             `json:"selfHeal,omitempty"`
	DependsOn    []string          `json:"dependsOn,omitempty"`
	ResolveImage string            `json:"resolveImage,omitempty"`
}

// routeDocument is a Route document: one SLB listener forwarding to one service.
type routeDocument struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   objectMeta     `json:"metadata"`
	Spec       resource.Route `json:"spec"`
}

var (
	// Stack names are compose project names (compose-go lowercases anything else) and
	// prefix every object name, so they keep to its alphabet.
	stackNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// Route names go into SLB descriptions and VServer group names.
	routeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
	// Variable names as compose interpolation understands them.
	variableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// IDs end up inside a Key ("<lb>:<port>/<protocol>"), so no separators.
	lbIDRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

const maxNameLen = 63

func checkStackName(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > maxNameLen:
		return fmt.Sprintf("%q is longer than %d characters", name, maxNameLen)
	case !stackNameRE.MatchString(name):
		return fmt.Sprintf("%q is not a valid stack name: use lower-case letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return ""
}

// decodeManifest reads every document of one manifest file.
func decodeManifest(file string, data []byte) ([]*stackDecl, []*routeDecl, Problems) {
	var (
		stacks   []*stackDecl
		routes   []*routeDecl
		problems Problems
	)
	for _, c := range splitDocuments(data) {
		d, ps := parseChunk(file, c)
		problems = append(problems, ps...)
		if d == nil {
			continue
		}
		h := d.header
		docLine := d.line(d.root.Line)
		switch {
		case h.APIVersion == "":
			problems = append(problems, errorAt(file, docLine, "apiVersion is missing; want %s", APIVersion))
			continue
		case h.APIVersion == APIVersion:
		case strings.Contains(strings.ToLower(h.APIVersion), "capstan"):
			problems = append(problems, errorAt(file, h.apiLine, "apiVersion %q is not supported; want %s", h.APIVersion, APIVersion))
			continue
		default:
			problems = append(problems, warningAt(file, h.apiLine, "document with apiVersion %q is not a capstan manifest; skipped", h.APIVersion))
			continue
		}
		switch h.Kind {
		case KindStack:
			var doc stackDocument
			if ps := strictDecode(d, &doc); len(ps) > 0 {
				problems = append(problems, ps...)
				continue
			}
			s, ps := newStackDecl(d, &doc)
			problems = append(problems, ps...)
			if s != nil {
				stacks = append(stacks, s)
			}
		case KindRoute:
			var doc routeDocument
			if ps := strictDecode(d, &doc); len(ps) > 0 {
				problems = append(problems, ps...)
				continue
			}
			r, ps := newRouteDecl(d, &doc)
			problems = append(problems, ps...)
			if r != nil {
				routes = append(routes, r)
			}
		case "":
			problems = append(problems, errorAt(file, docLine, "kind is missing; want %s or %s", KindStack, KindRoute))
		default:
			problems = append(problems, errorAt(file, h.kindLine, "kind %q is unknown; want %s or %s", h.Kind, KindStack, KindRoute))
		}
	}
	return stacks, routes, problems
}

// stackDecl is one stack, declared by a document or implied by a .dab file or a
// stacks/NAME/ directory.
type stackDecl struct {
	name  string
	file  string // declaring file, relative to the root
	line  int    // line of metadata.name; 0 for implied stacks
	dir   string // directory paths are relative to, relative to the root ("" = root)
	spec  stackSpec
	lines fieldLines // nil for implied stacks

	implied bool
	invalid bool // the document has errors; declared but not loaded
	// Resolved absolute paths, checked to stay inside the tree.
	composeFiles []string
	bundleFile   string
	envFiles     []string
}

func (s *stackDecl) at(path string) int {
	if s.lines == nil {
		return 0
	}
	return s.lines.at(path)
}

// source is "file:line" of the declaration, or just the file when implied.
func (s *stackDecl) source() string {
	if s.line > 0 {
		return fmt.Sprintf("%s:%d", s.file, s.line)
	}
	return s.file
}

func (s *stackDecl) settings() resource.Stack {
	st := resource.Stack{
		Name:         s.name,
		Source:       s.file,
		Prune:        true,
		SelfHeal:     true,
		DependsOn:    append([]string(nil), s.spec.DependsOn...),
		ResolveImage: s.spec.ResolveImage,
	}
	if s.spec.Prune != nil {
		st.Prune = *s.spec.Prune
	}
	if s.spec.SelfHeal != nil {
		st.SelfHeal = *s.spec.SelfHeal
	}
	if st.ResolveImage == "" {
		st.ResolveImage = resource.ResolveChanged
	}
	return st
}

func newStackDecl(d *parsedDoc, doc *stackDocument) (*stackDecl, Problems) {
	var ps Problems
	f := d.file
	s := &stackDecl{
		name:  doc.Metadata.Name,
		file:  f,
		line:  d.lines.at("metadata.name"),
		dir:   dirOf(f),
		spec:  doc.Spec,
		lines: d.lines,
	}
	if msg := checkStackName(s.name); msg != "" {
		ps = append(ps, errorAt(f, d.lines.at("metadata.name"), "metadata.name: %s", msg))
	}
	sp := &doc.Spec
	switch {
	case len(sp.Compose) == 0 && sp.Bundle == "":
		ps = append(ps, errorAt(f, d.lines.at("spec"), "spec: set compose (a list of compose files) or bundle (one .dab file)"))
	case len(sp.Compose) > 0 && sp.Bundle != "":
		ps = append(ps, errorAt(f, d.lines.at("spec.bundle"), "spec: compose and bundle are mutually exclusive; set one of them"))
	}
	if sp.Bundle != "" {
		if len(sp.Variables) > 0 {
			ps = append(ps, warningAt(f, d.lines.at("spec.variables"), "spec.variables has no effect on a bundle: .dab files are not interpolated"))
		}
		if len(sp.EnvFiles) > 0 {
			ps = append(ps, warningAt(f, d.lines.at("spec.envFiles"), "spec.envFiles has no effect on a bundle: .dab files are not interpolated"))
		}
	}
	for _, k := range sortedKeys(sp.Variables) {
		if !variableRE.MatchString(k) {
			ps = append(ps, errorAt(f, d.lines.at("spec.variables."+k), "spec.variables: %q is not a valid variable name (letters, digits and '_', not starting with a digit)", k))
		}
	}
	switch sp.ResolveImage {
	case "", resource.ResolveNever, resource.ResolveChanged, resource.ResolveAlways:
	default:
		ps = append(ps, errorAt(f, d.lines.at("spec.resolveImage"), "spec.resolveImage: %q is not one of never, changed, always", sp.ResolveImage))
	}
	seen := map[string]bool{}
	for i, dep := range sp.DependsOn {
		p := fmt.Sprintf("spec.dependsOn[%d]", i)
		switch {
		case dep == "":
			ps = append(ps, errorAt(f, d.lines.at(p), "%s: empty stack name", p))
		case dep == s.name:
			ps = append(ps, errorAt(f, d.lines.at(p), "%s: stack %q depends on itself", p, dep))
		case seen[dep]:
			ps = append(ps, errorAt(f, d.lines.at(p), "%s: %q is listed twice", p, dep))
		}
		seen[dep] = true
	}
	// A stack with errors is still declared, so that other documents naming it do not
	// report it missing; it is marked invalid and never loaded.
	s.invalid = ps.HasErrors()
	if s.name == "" {
		return nil, ps
	}
	return s, ps
}

func dirOf(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ""
	}
	return rel[:i]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
