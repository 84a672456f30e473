package manifests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/paths"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
	yaml "go.yaml.in/yaml/v4"

	"github.com/capstan-dev/capstan/resource"
)

// Compose files are loaded by compose-go (v2, v3 and Compose Specification files alike)
// and converted into Swarm specs by capstan itself, to the same result docker stack
// deploy (docker/cli v28.5.2 cli/compose/convert) gives for every v3 file; the
// conformance test holds the two side by side. docs/compose-compatibility.md lists the
// deliberate differences, the v2 mapping and the unsupported-key policy.

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
func loadCompose(in composeInput) (res []resource.Resource, probs Problems) {
	quietComposeLogging()
	l := &composeLoader{in: in, unset: map[string]bool{}}
	defer func() {
		// compose-go asserts types in places; a panic on some odd input must still come
		// back as a problem, never take the process down.
		if r := recover(); r != nil {
			res = nil
			probs = append(l.probs, Problem{File: l.firstRel(), Severity: Error,
				Message: fmt.Sprintf("cannot load the compose files (internal error: %v); please report this with the file", r)})
			probs.Sort()
		}
	}()
	res = l.load()
	l.probs.Sort()
	// One attribute repeated in a list (host_ip on every port) is one problem.
	l.probs = slices.Compact(l.probs)
	if l.probs.HasErrors() {
		return nil, l.probs
	}
	if l.cacheable {
		storeCompose(l.key, res, l.probs, l.reads)
	}
	return res, l.probs
}

var quietOnce sync.Once

// quietComposeLogging silences the global logrus logger compose-go writes to. Everything
// it says that matters to a user (unset variables, ignored attributes) comes back as a
// Problem; the rest would be stray lines on stderr with absolute paths.
func quietComposeLogging() {
	quietOnce.Do(func() { logrus.SetOutput(io.Discard) })
}

type composeLoader struct {
	in      composeInput
	docs    []*composeDoc
	probs   Problems
	project string // the compose project name handed to compose-go

	unsetMu sync.Mutex
	unset   map[string]bool // variables used bare ($X, ${X}) but not set

	// The cache (compose_cache.go): this load's key, whether its result may be kept,
	// and the files it read besides the compose files.
	key       composeCacheKey
	cacheable bool
	readsMu   sync.Mutex
	reads     []composeRead

	findings []loader.UnsupportedAttribute
	raw      map[string]composeRaw // per service, values the typed model loses
	scan     composeKeyScan        // keys of the input files, for narrowing compose-go's casts
	realRoot string
}

// composeRaw holds values read from compose-go's model dictionary before it is bound to
// structs: the order of extra_hosts (a map in the typed model) and CPU values exactly as
// written (float32 in the typed model).
type composeRaw struct {
	extraHosts  any
	cpus        any
	limitCPUs   any
	reserveCPUs any
}

func (l *composeLoader) firstRel() string {
	if len(l.in.Files) == 0 {
		return ""
	}
	return composeRel(l.in.Root, l.in.Files[0])
}

func (l *composeLoader) add(p Problem) { l.probs = append(l.probs, p) }

func (l *composeLoader) errorf(file string, line int, format string, args ...any) {
	l.add(Problem{File: file, Line: line, Severity: Error, Message: fmt.Sprintf(format, args...)})
}

func (l *composeLoader) warnf(file string, line int, format string, args ...any) {
	l.add(Problem{File: file, Line: line, Severity: Warning, Message: fmt.Sprintf(format, args...)})
}

func (l *composeLoader) load() []resource.Resource {
	if len(l.in.Files) == 0 {
		l.errorf("", 0, "stack %q lists no compose files", l.in.Stack)
		return nil
	}
	if real, err := filepath.EvalSymlinks(l.in.Root); err == nil {
		l.realRoot = real
	} else {
		l.realRoot = filepath.Clean(l.in.Root)
	}
	read := l.readFiles()
	if read {
		l.cacheable = true
		l.key = l.cacheKey()
		if res, probs, ok := cachedCompose(l.key); ok {
			l.probs = probs
			l.cacheable = false // already there
			return res
		}
	}
	// The files that could be read are still parsed when another could not, so all
	// their problems come back at once.
	if parsed := l.parseFiles(); !read || !parsed {
		return nil
	}
	l.precheck()
	if l.probs.HasErrors() {
		return nil
	}
	l.scan = scanComposeKeys(l.docs)
	if l.scan.extendsFile {
		// compose-go reads the extended files itself; see compose_cache.go.
		l.cacheable = false
	}
	project := l.loadProject()
	if project == nil || l.probs.HasErrors() {
		return nil
	}
	return l.convert(project)
}

// readFiles reads every input file.
func (l *composeLoader) readFiles() bool {
	ok := true
	for _, abs := range l.in.Files {
		d := &composeDoc{abs: abs, rel: composeRel(l.in.Root, abs)}
		data, err := readComposeInput(abs)
		if composeIsTooLarge(err) {
			l.errorf(d.rel, 0, "%v; split it into several compose files listed in the Stack document's spec.compose", err)
			ok = false
			continue
		}
		if err != nil {
			l.errorf(d.rel, 0, "cannot read the compose file: %v", trimComposePathError(err))
			ok = false
			continue
		}
		d.data = data
		l.docs = append(l.docs, d)
	}
	return ok
}

// parseFiles parses every input file once, for positions.
func (l *composeLoader) parseFiles() bool {
	ok := true
	for _, d := range l.docs {
		if probs := d.parse(); len(probs) > 0 {
			l.probs = append(l.probs, probs...)
			ok = false
		}
	}
	return ok
}

func trimComposePathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// precheck refuses what must not reach compose-go: include (it reads files compose-go
// finds on its own, and an implicit .env) and a project name that differs from the stack.
func (l *composeLoader) precheck() {
	for _, d := range l.docs {
		keys := d.topKeys()
		if line, ok := keys["include"]; ok {
			l.errorf(d.rel, line, "include is not supported: list every file in the Stack document's spec.compose instead, so capstan can check it stays inside the source tree")
		}
		if name, line, ok := d.scalar("name"); ok && !strings.Contains(name, "$") && name != l.in.Stack {
			l.warnf(d.rel, line, "name %q is ignored: the stack is named %q by its Stack document", name, l.in.Stack)
		}
		l.checkHomeMounts(d)
	}
}

// checkHomeMounts refuses bind mounts from "~": compose-go expands it with the home
// directory of the process loading the file, which is neither what is in Git nor a path
// on the Swarm node that runs the task.
func (l *composeLoader) checkHomeMounts(d *composeDoc) {
	services := composeDeref(d.child("services"))
	if services == nil || services.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(services.Content); i += 2 {
		svc := composeDeref(services.Content[i+1])
		if svc == nil || svc.Kind != yaml.MappingNode {
			continue
		}
		_, vols := composeMapEntry(svc, "volumes", 0)
		vols = composeDeref(vols)
		if vols == nil || vols.Kind != yaml.SequenceNode {
			continue
		}
		for _, v := range vols.Content {
			v = composeDeref(v)
			src := v
			if v.Kind == yaml.MappingNode {
				_, src = composeMapEntry(v, "source", 0)
				src = composeDeref(src)
			}
			if src != nil && src.Kind == yaml.ScalarNode && strings.HasPrefix(src.Value, "~") {
				l.errorf(d.rel, src.Line, "service %q: bind mount source %s starts with ~, which means nothing on a Swarm node; use an absolute path",
					services.Content[i].Value, strings.SplitN(src.Value, ":", 2)[0])
			}
		}
	}
}

// composeProjectName is the compose project name for a stack. compose-go only accepts
// lowercase names of [a-z0-9_-]; Swarm stack names are wider, and capstan computes every
// Swarm name from the stack itself, so a stack outside that alphabet loads under its
// normalized form.
func composeProjectName(stack string) string {
	if n := loader.NormalizeProjectName(stack); n != "" {
		return n
	}
	return "stack"
}

func (l *composeLoader) loadProject() *types.Project {
	l.project = composeProjectName(l.in.Stack)
	env := make(map[string]string, len(l.in.Env)+1)
	for k, v := range l.in.Env {
		env[k] = v
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(l.in.Files[0]),
		Environment: env,
	}
	for _, d := range l.docs {
		details.ConfigFiles = append(details.ConfigFiles, types.ConfigFile{Filename: d.abs, Content: d.data})
	}
	guard := composeContainedLoader{root: l.realRoot, workingDir: details.WorkingDir}
	opts := []func(*loader.Options){
		func(o *loader.Options) {
			o.SetProjectName(l.project, true)
			o.SkipInclude = true
			// compose-go's defaults (secret target /run/secrets/x, port protocol and mode)
			// are not docker stack deploy's: the conversion applies Swarm's own.
			o.SkipDefaultValues = true
			o.ResourceLoaders = []loader.ResourceLoader{guard}
			o.Interpolate.Substitute = l.substitute
			o.Interpolate.TypeCastMapping = l.scan.castMapping()
			// Relative paths are resolved and the model normalized below, between
			// loading and binding, in the order compose-go runs them itself; see
			// resolveComposePaths.
			o.ResolvePaths = false
			o.SkipNormalization = true
		},
		loader.WithSupportedAttributes(composeSupported(), func(f []loader.UnsupportedAttribute) {
			l.findings = f
		}),
	}
	ctx := context.Background()
	dict, err := loader.LoadModelWithContext(ctx, details, opts...)
	if err != nil {
		l.refused(err, env)
		return nil
	}
	if err := resolveComposePaths(dict, details.WorkingDir, []paths.RemoteResource{guard.Accept}); err != nil {
		l.loadError(err)
		return nil
	}
	// LoadModelWithContext has added COMPOSE_PROJECT_NAME to env, as compose-go's own
	// normalization sees it.
	dict["name"] = l.project
	if dict, err = loader.Normalize(dict, env); err != nil {
		l.loadError(err)
		return nil
	}
	l.captureRaw(dict)
	if !l.checkReadPaths(dict) {
		return nil
	}
	driverSecrets := markDriverSecrets(dict)
	project, err := loader.ModelToProject(dict, loader.ToOptions(&details, opts), details)
	if err != nil {
		l.loadError(err)
		return nil
	}
	for _, key := range driverSecrets {
		s := project.Secrets[key]
		s.Environment = ""
		project.Secrets[key] = s
	}
	l.reportUnset()
	return project
}

// composeDriverPlaceholder stands in for the content of a secret a secret driver
// provides; see markDriverSecrets.
const composeDriverPlaceholder = "\x00capstan: content from the secret driver"

// markDriverSecrets gives secrets whose content comes from a secret driver (Swarm and
// docker stack deploy support them) a placeholder source, because compose-go's
// consistency check insists on file or environment. The placeholder is removed again
// from the loaded project; it returns the keys it marked.
func markDriverSecrets(dict map[string]any) []string {
	secrets, _ := dict["secrets"].(map[string]any)
	var marked []string
	for key, v := range secrets {
		s, _ := v.(map[string]any)
		if s == nil || s["driver"] == nil {
			continue
		}
		if _, ok := s["file"]; ok {
			continue
		}
		if _, ok := s["environment"]; ok {
			continue
		}
		if ext, _ := s["external"].(bool); ext {
			continue
		}
		s["environment"] = composeDriverPlaceholder
		marked = append(marked, key)
	}
	return marked
}

// substitute is compose-go's interpolation with one addition: it remembers variables used
// without a default that are not set, which compose-go would only log.
func (l *composeLoader) substitute(tmpl string, mapping template.Mapping) (string, error) {
	return template.SubstituteWithOptions(tmpl, mapping, template.WithoutLogging,
		template.WithReplacementFunction(func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
			if name := composeBareVar(sub); name != "" {
				if _, ok := m(name); !ok {
					l.unsetMu.Lock()
					l.unset[name] = true
					l.unsetMu.Unlock()
				}
			}
			v, _, err := template.DefaultReplacementAppliedFunc(sub, m, cfg)
			return v, err
		}))
}

var composeBareVarRE = regexp.MustCompile(`^\$(?:([_a-zA-Z][_a-zA-Z0-9]*)|\{([_a-zA-Z][_a-zA-Z0-9]*)\})$`)

func composeBareVar(sub string) string {
	m := composeBareVarRE.FindStringSubmatch(sub)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// reportUnset warns about every variable used without a value, at its first use.
func (l *composeLoader) reportUnset() {
	names := make([]string, 0, len(l.unset))
	for n := range l.unset {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		file, line := l.firstRel(), 0
		re := regexp.MustCompile(`\$(?:` + regexp.QuoteMeta(n) + `\b|\{` + regexp.QuoteMeta(n) + `\})`)
		for _, d := range l.docs {
			if loc := re.FindIndex(d.data); loc != nil {
				file, line = d.rel, 1+strings.Count(string(d.data[:loc[0]]), "\n")
				break
			}
		}
		l.warnf(file, line, "variable %s is not set, so an empty string is used; set it in the Stack document's spec.variables or an envFile", n)
	}
}

// captureRaw keeps what the typed model loses; see composeRaw.
func (l *composeLoader) captureRaw(dict map[string]any) {
	l.raw = map[string]composeRaw{}
	services, _ := dict["services"].(map[string]any)
	for name, s := range services {
		svc, _ := s.(map[string]any)
		if svc == nil {
			continue
		}
		r := composeRaw{extraHosts: svc["extra_hosts"], cpus: svc["cpus"]}
		if deploy, ok := svc["deploy"].(map[string]any); ok {
			if res, ok := deploy["resources"].(map[string]any); ok {
				if lim, ok := res["limits"].(map[string]any); ok {
					r.limitCPUs = lim["cpus"]
				}
				if rsv, ok := res["reservations"].(map[string]any); ok {
					r.reserveCPUs = rsv["cpus"]
				}
			}
		}
		l.raw[name] = r
	}
}

// checkReadPaths makes sure the files compose-go is about to read into the model
// (env_file, label_file) stay inside the source tree: their content ends up in service
// specs, and a commit must not be able to copy the capstan host's files into Swarm.
func (l *composeLoader) checkReadPaths(dict map[string]any) bool {
	ok := true
	services, _ := dict["services"].(map[string]any)
	for _, name := range sortedComposeKeys(services) {
		svc, _ := services[name].(map[string]any)
		if svc == nil {
			continue
		}
		if files, isList := svc["env_file"].([]any); isList {
			for i, f := range files {
				m, _ := f.(map[string]any)
				p, _ := m["path"].(string)
				if p != "" && !l.checkReadPath(name, "env_file", i, p) {
					ok = false
				}
			}
		}
		if files, isList := svc["label_file"].([]any); isList {
			for i, f := range files {
				p, _ := f.(string)
				if p != "" && !l.checkReadPath(name, "label_file", i, p) {
					ok = false
				}
			}
		}
	}
	// Secret and config files are read by the conversion, which only runs when the
	// rest loads; their size is checked now so that it is reported with the rest.
	for _, section := range []string{"secrets", "configs"} {
		objs, _ := dict[section].(map[string]any)
		for _, key := range sortedComposeKeys(objs) {
			m, _ := objs[key].(map[string]any)
			p, _ := m["file"].(string)
			if p == "" || !l.inside(p) {
				continue // outside: the conversion says so
			}
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() > MaxFileSize {
				file, line := l.locate(false, section, key)
				l.errorf(file, line, "%s %q: cannot read file %s: %v", strings.TrimSuffix(section, "s"), key, composeRel(l.in.Root, p), composeTooLarge{st.Size()})
				ok = false
			}
		}
	}
	return ok
}

// checkReadPath checks one env_file or label_file of a service: inside the tree and
// not larger than capstan reads. It reads the file for the cache; compose-go reads it
// again when it binds the model (a missing file is compose-go's to report, as it knows
// whether the file is required).
func (l *composeLoader) checkReadPath(service, attr string, i int, p string) bool {
	if !l.inside(p) {
		file, line := l.locate(false, "services", service, attr, fmt.Sprint(i))
		l.errorf(file, line, "service %q: %s %s", service, attr, l.describeOutside(p))
		return false
	}
	if _, err := l.readRecorded(p); composeIsTooLarge(err) {
		file, line := l.locate(false, "services", service, attr, fmt.Sprint(i))
		l.errorf(file, line, "service %q: %s %s: %v", service, attr, composeRel(l.in.Root, p), err)
		return false
	}
	return true
}

// inside reports whether abs, with symlinks resolved, lies inside the source root.
func (l *composeLoader) inside(abs string) bool {
	return composeWithin(l.realRoot, abs)
}

func composeWithin(realRoot, abs string) bool {
	rel, err := filepath.Rel(realRoot, composeResolve(abs))
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// describeOutside renders a path that leaves the source tree for a message: as written
// when it lies outside lexically, or with where its symlinks lead.
func (l *composeLoader) describeOutside(abs string) string {
	clean := filepath.Clean(abs)
	shown := composeRel(l.in.Root, clean) // absolute when it is outside lexically
	if real, err := filepath.EvalSymlinks(clean); err == nil && real != clean {
		return fmt.Sprintf("%s leads outside the source tree (to %s)", shown, real)
	}
	return shown + " is outside the source tree"
}

// composeResolve resolves the symlinks of the longest existing prefix of abs, so a
// missing file is judged by where its directory really is.
func composeResolve(abs string) string {
	p := filepath.Clean(abs)
	var rest []string
	for {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Clean(abs)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// composeContainedLoader is consulted before compose-go's local file loader for extends
// files: it claims every path that leaves the source tree or is larger than capstan
// reads, and refuses to load it.
type composeContainedLoader struct {
	root       string // symlinks resolved
	workingDir string
}

func (g composeContainedLoader) abs(p string) string {
	if !filepath.IsAbs(p) {
		return filepath.Join(g.workingDir, p)
	}
	return p
}

func (g composeContainedLoader) Accept(p string) bool {
	return !composeWithin(g.root, g.abs(p)) || g.tooLarge(p) != nil
}

func (g composeContainedLoader) tooLarge(p string) error {
	if st, err := os.Stat(g.abs(p)); err == nil && st.Mode().IsRegular() && st.Size() > MaxFileSize {
		return composeTooLarge{st.Size()}
	}
	return nil
}

func (g composeContainedLoader) Load(_ context.Context, p string) (string, error) {
	if !composeWithin(g.root, g.abs(p)) {
		return "", fmt.Errorf("extends file %s is outside the source tree", p)
	}
	return "", fmt.Errorf("extends file %s: %w", p, g.tooLarge(p))
}

func (g composeContainedLoader) Dir(p string) string { return filepath.Dir(p) }

// locate finds the file and line of a path. last prefers the last file that sets it (the
// value that won the merge); otherwise the first. The file is the first input when no
// file has the path.
func (l *composeLoader) locate(last bool, path ...string) (string, int) {
	bestFile, bestLine, bestDepth := l.firstRel(), 0, -1
	for i := range l.docs {
		d := l.docs[i]
		if last {
			d = l.docs[len(l.docs)-1-i]
		}
		// Find how deep the path goes in this file; the deepest partial match wins.
		for depth := len(path); depth > bestDepth && depth > 0; depth-- {
			if line, ok := d.lookup(path[:depth]...); ok {
				bestFile, bestLine, bestDepth = d.rel, line, depth
				break
			}
		}
		if bestDepth == len(path) {
			break
		}
	}
	return bestFile, bestLine
}

// locateIn is locate restricted to one file (by relative name), falling back to locate.
func (l *composeLoader) locateIn(rel string, path ...string) (string, int) {
	for _, d := range l.docs {
		if d.rel != rel {
			continue
		}
		for depth := len(path); depth > 0; depth-- {
			if line, ok := d.lookup(path[:depth]...); ok {
				return d.rel, line
			}
		}
		return d.rel, 0
	}
	return l.locate(false, path...)
}

// Messages from compose-go name the offending attribute in one of these forms.
var (
	composeErrValidating  = regexp.MustCompile(`^validating (.+?): (\S+) (.*)$`)
	composeErrInterp      = regexp.MustCompile(`^error while interpolating (\S+): (.*)$`)
	composeErrInterpFmt   = regexp.MustCompile(`(?s)^invalid interpolation format for (\S+)\.`)
	composeErrParse       = regexp.MustCompile(`^failed to parse (.+?): (.*)$`)
	composeErrService     = regexp.MustCompile(`services?[ .]"?([^" .:]+)"?`)
	composeErrAddlProp    = regexp.MustCompile(`additional properties? '([^']+)'`)
	composeErrQuoted      = regexp.MustCompile(`'([^']+)'`)
	composeErrExtends     = regexp.MustCompile(`^extends file (\S+) is outside the source tree`)
	composeErrExtendsSize = regexp.MustCompile(`^extends file (\S+): file is `)
)

// loadError turns a compose-go error into problems, one per joined error, each located
// as precisely as its message allows.
func (l *composeLoader) loadError(err error) {
	if many, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range many.Unwrap() {
			l.loadError(e)
		}
		return
	}
	msg := l.cleanMessage(err.Error())
	file, line := l.firstRel(), 0

	switch {
	case composeErrParse.MatchString(msg):
		m := composeErrParse.FindStringSubmatch(msg)
		file = m[1]
		line, msg = composeYAMLError(m[2])
		msg = "YAML syntax: " + msg
	case composeErrValidating.MatchString(msg):
		m := composeErrValidating.FindStringSubmatch(msg)
		path := strings.Split(m[2], ".")
		// The validator lists unknown attributes in map order: sort them, and point
		// at the first.
		var unknown []string
		if composeErrAddlProp.MatchString(m[3]) {
			for _, q := range composeErrQuoted.FindAllStringSubmatch(m[3], -1) {
				unknown = append(unknown, q[1])
			}
			sort.Strings(unknown)
			path = append(path, unknown[0])
		}
		file, line = l.locateIn(m[1], path...)
		msg = m[2] + " " + composeTypeWords(m[3])
		switch {
		case m[3] == "false schema" && len(path) > 1:
			msg = fmt.Sprintf("%s: unknown attribute %q; check its spelling against the Compose Specification", strings.Join(path[:len(path)-1], "."), path[len(path)-1])
		case len(unknown) > 0:
			var names []string
			for _, u := range unknown {
				names = append(names, strconv.Quote(u))
			}
			noun, its := "attribute", "its"
			if len(names) > 1 {
				noun, its = "attributes", "their"
			}
			msg = fmt.Sprintf("%s: unknown %s %s; check %s spelling against the Compose Specification", m[2], noun, strings.Join(names, ", "), its)
		}
	case composeErrInterp.MatchString(msg):
		m := composeErrInterp.FindStringSubmatch(msg)
		file, line = l.locate(false, strings.Split(m[1], ".")...)
		msg = m[1] + ": " + composeCastError(m[2])
		if strings.Contains(m[2], "required variable") {
			msg += "; set it in the Stack document's spec.variables or an envFile"
		}
	case composeErrInterpFmt.MatchString(msg):
		m := composeErrInterpFmt.FindStringSubmatch(msg)
		file, line = l.locate(false, strings.Split(m[1], ".")...)
		msg = strings.ReplaceAll(msg, "\n", " ")
	case composeErrExtends.MatchString(msg):
		// The path is as written in some extends.file; find where.
		file, line = l.findText(composeErrExtends.FindStringSubmatch(msg)[1])
	case composeErrExtendsSize.MatchString(msg):
		file, line = l.findText(composeErrExtendsSize.FindStringSubmatch(msg)[1])
	default:
		if m := composeErrService.FindStringSubmatch(msg); m != nil {
			file, line = l.locate(false, "services", m[1])
		}
	}
	l.errorf(file, line, "%s", msg)
}

// refused reports why compose-go refused the files: its own error, completed by
// diagnose with every other mistake it can find. compose-go's problems that diagnose
// found as well are reported once.
func (l *composeLoader) refused(err error, env map[string]string) {
	// compose-go's problems one by one, each knowing whether it is a schema violation.
	type own struct {
		p      Problem
		schema bool
	}
	var owns []own
	var split func(err error)
	split = func(err error) {
		if many, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range many.Unwrap() {
				split(e)
			}
			return
		}
		before := len(l.probs)
		l.loadError(err)
		for _, p := range l.probs[before:] {
			owns = append(owns, own{p, composeErrValidating.MatchString(l.cleanMessage(err.Error()))})
		}
		l.probs = l.probs[:before]
	}
	split(err)
	diag := l.diagnose(env)
	for _, o := range owns {
		// diagnose words a violation as compose-go does, but where compose-go picked
		// one of several alternatives it may name them all: the same place is the
		// same violation.
		if !slices.ContainsFunc(diag, func(d Problem) bool {
			return d.File == o.p.File && (d.Message == o.p.Message || strings.HasSuffix(d.Message, ": "+o.p.Message) ||
				o.schema && d.Line == o.p.Line && o.p.Line > 0)
		}) {
			l.probs = append(l.probs, o.p)
		}
	}
	l.probs = append(l.probs, diag...)
}

// findText locates the first occurrence of text in the input files, for messages that
// quote a value rather than name an attribute.
func (l *composeLoader) findText(text string) (string, int) {
	if text != "" {
		for _, d := range l.docs {
			if i := strings.Index(string(d.data), text); i >= 0 {
				return d.rel, 1 + strings.Count(string(d.data[:i]), "\n")
			}
		}
	}
	return l.firstRel(), 0
}

var composeTypeWordsRE = regexp.MustCompile(`^must be a ([a-z]+(?:, [a-z]+)*(?: or [a-z]+)?)$`)

// composeTypeWords rewords compose-go's "must be a integer or string" for YAML users:
// "must be an integer or a string", lists and mappings by those names.
func composeTypeWords(msg string) string {
	m := composeTypeWordsRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	words := map[string]string{"mapping": "a mapping", "object": "a mapping", "array": "a list", "string": "a string",
		"integer": "an integer", "number": "a number", "boolean": "a boolean (true or false)", "null": "empty"}
	var names []string
	for _, n := range strings.FieldsFunc(strings.ReplaceAll(m[1], " or ", ", "), func(r rune) bool { return r == ',' || r == ' ' }) {
		w, ok := words[n]
		if !ok {
			return msg
		}
		names = append(names, w)
	}
	if len(names) == 1 {
		return "must be " + names[0]
	}
	// compose-go sorts the type names; "empty" reads better last.
	if i := slices.Index(names, "empty"); i >= 0 {
		names = append(slices.Delete(names, i, i+1), "empty")
	}
	return "must be " + strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

var composeCastRE = regexp.MustCompile(`^failed to cast to expected type: (?:strconv\.(\w+): parsing "(.*)": .*|invalid boolean: (.*))$`)

// composeCastError rewords compose-go's type cast failures ("strconv.Atoi: parsing ...").
func composeCastError(msg string) string {
	m := composeCastRE.FindStringSubmatch(msg)
	switch {
	case m == nil:
		return msg
	case m[3] != "":
		return fmt.Sprintf("%q is not a boolean (use true or false)", m[3])
	case m[1] == "ParseFloat":
		return fmt.Sprintf("%q is not a number", m[2])
	case m[1] == "ParseBool":
		return fmt.Sprintf("%q is not a boolean (use true or false)", m[2])
	}
	return fmt.Sprintf("%q is not an integer", m[2])
}

// cleanMessage removes what means nothing to the user: absolute paths of the checkout and
// compose-go's error class suffixes.
func (l *composeLoader) cleanMessage(msg string) string {
	for _, root := range []string{l.in.Root, l.realRoot} {
		if root != "" {
			msg = strings.ReplaceAll(msg, root+string(filepath.Separator), "")
		}
	}
	for _, suffix := range []string{": invalid compose project", ": not found"} {
		msg = strings.TrimSuffix(msg, suffix)
	}
	return msg
}

func sortedComposeKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
