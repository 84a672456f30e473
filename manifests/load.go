package manifests

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/capstan-dev/capstan/resource"
)

// Options say how loaded resources are stamped.
type Options struct {
	// Instance is written to dev.capstan.managed-by; resource.DefaultInstance when empty.
	Instance string
	// Revision is written to dev.capstan.revision when not empty.
	Revision string
}

// composeFileNames are the names that make stacks/NAME/ a stack, in the order
// `docker compose` prefers them.
var composeFileNames = []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}

// Load reads the source tree at root into the desired Set.
//
// Every problem found is returned, errors and warnings alike, sorted by file and line.
// When any of them is an error the Set is nil: a plan may only be built from a source
// that loaded completely.
func Load(root string, opts Options) (*resource.Set, Problems) {
	if opts.Instance == "" {
		opts.Instance = resource.DefaultInstance
	}
	tree, err := newSourceTree(root)
	if err != nil {
		return nil, Problems{{Severity: Error, Message: err.Error()}}
	}
	l := &treeLoader{tree: tree, opts: opts, byName: map[string]*stackDecl{}, failed: map[string]bool{}}
	l.discover()
	l.declareFromDocuments()
	l.declareImplied()
	set := l.loadStacks()
	l.checkDependencies()
	l.addRoutes(set)
	l.checkReservedLabels(set)
	if len(l.stacks) == 0 && len(l.routes) == 0 && !l.problems.HasErrors() {
		l.problems = append(l.problems, Problem{Severity: Warning,
			Message: fmt.Sprintf("%s holds no Stack or Route documents, .dab files or stacks/NAME/ directories", root)})
	}
	l.problems.Sort()
	if l.problems.HasErrors() {
		return nil, l.problems
	}
	for k, r := range set.Resources {
		stamp(&r, opts)
		set.Resources[k] = r
	}
	return set, l.problems
}

type treeLoader struct {
	tree     *sourceTree
	opts     Options
	problems Problems

	manifests  []string            // absolute paths of manifest files
	bundles    []string            // absolute paths of *.dab files
	composeDir map[string][]string // stacks/NAME directory → compose files in it

	stacks     []*stackDecl          // every stack, sorted by name once declared
	byName     map[string]*stackDecl // stacks by name
	routes     []*routeDecl
	referenced map[string]bool // files some Stack document names
	failed     map[string]bool // stacks that did not load
}

func (l *treeLoader) add(ps ...Problem) { l.problems = append(l.problems, ps...) }

// discover walks the tree for manifest files, bundles and stacks/NAME directories.
// Symlinks are not followed, so nothing is found twice and nothing outside the tree
// is read; .git is skipped.
func (l *treeLoader) discover() {
	l.composeDir = map[string][]string{}
	_ = filepath.WalkDir(l.tree.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			l.add(errorAt(l.tree.rel(p), 0, "cannot read: %v", trimPathError(err)))
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != l.tree.root {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		name := d.Name()
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml":
			l.considerManifest(p)
		case ".dab":
			l.bundles = append(l.bundles, p)
		}
		dir := filepath.Dir(p)
		if filepath.Base(filepath.Dir(dir)) == "stacks" && dir != l.tree.root {
			for _, c := range composeFileNames {
				if name == c {
					l.composeDir[dir] = append(l.composeDir[dir], name)
				}
			}
		}
		return nil
	})
}

// considerManifest reads one *.yaml/*.yml file and decodes it when it is a capstan
// manifest, i.e. when it names a capstan apiVersion. Other YAML (compose files, CI
// configuration) is left alone. A file too large or not text is inspected only far
// enough to tell whether it was meant as a manifest: then it is an error, otherwise a
// warning that it was skipped.
func (l *treeLoader) considerManifest(abs string) {
	rel := l.tree.rel(abs)
	data, err := readCapped(abs)
	if err != nil {
		head, herr := readHead(abs, headSize)
		if herr == nil && !capstanMarker.Match(head) {
			l.add(warningAt(rel, 0, "skipped: %v, and it does not start like a capstan manifest", err))
			return
		}
		l.add(errorAt(rel, 0, "%v; split the manifests into smaller files", err))
		return
	}
	if why := binaryReason(data); why != "" {
		if capstanMarker.Match(data) {
			l.add(errorAt(rel, 0, "not a text file (%s); a manifest must be UTF-8 YAML", why))
		} else {
			l.add(warningAt(rel, 0, "skipped: not a text file (%s)", why))
		}
		return
	}
	if !capstanMarker.Match(data) {
		return
	}
	stacks, routes, ps := decodeManifest(rel, data)
	l.add(ps...)
	l.routes = append(l.routes, routes...)
	l.stacks = append(l.stacks, stacks...)
}

// declareFromDocuments checks Stack documents for duplicate names and resolves their
// paths.
func (l *treeLoader) declareFromDocuments() {
	l.referenced = map[string]bool{}
	docs := l.stacks
	l.stacks = nil
	for _, s := range docs {
		if prev, ok := l.byName[s.name]; ok {
			l.add(errorAt(s.file, s.line, "metadata.name: stack %q is already declared at %s", s.name, prev.source()))
			continue
		}
		l.byName[s.name] = s
		l.stacks = append(l.stacks, s)
		if s.invalid {
			l.failed[s.name] = true
			continue
		}
		l.resolvePaths(s)
	}
}

// resolvePaths turns a document's paths into checked absolute paths.
func (l *treeLoader) resolvePaths(s *stackDecl) {
	dir := filepath.Join(l.tree.root, filepath.FromSlash(s.dir))
	resolve := func(path, p string) string {
		abs, msg := l.tree.resolve(dir, p)
		if msg != "" {
			l.add(errorAt(s.file, s.at(path), "%s: %s", path, msg))
			l.failed[s.name] = true
			return ""
		}
		l.referenced[abs] = true
		return abs
	}
	for i, p := range s.spec.Compose {
		if abs := resolve(fmt.Sprintf("spec.compose[%d]", i), p); abs != "" {
			s.composeFiles = append(s.composeFiles, abs)
		}
	}
	if s.spec.Bundle != "" {
		s.bundleFile = resolve("spec.bundle", s.spec.Bundle)
	}
	for i, p := range s.spec.EnvFiles {
		if abs := resolve(fmt.Sprintf("spec.envFiles[%d]", i), p); abs != "" {
			s.envFiles = append(s.envFiles, abs)
		}
	}
}

// declareImplied adds the stacks that NAME.dab files and stacks/NAME/ directories stand
// for, unless a Stack document already declares NAME or uses the file.
func (l *treeLoader) declareImplied() {
	var implied []*stackDecl
	for _, abs := range l.bundles {
		rel := l.tree.rel(abs)
		base := filepath.Base(abs)
		name := strings.TrimSuffix(base, filepath.Ext(base))
		if l.referenced[abs] || l.byName[name] != nil && !l.byName[name].implied {
			continue
		}
		implied = append(implied, &stackDecl{name: name, file: rel, dir: dirOf(rel), implied: true, bundleFile: abs})
	}
	dirs := sortedKeys(l.composeDir)
	for _, dir := range dirs {
		files := l.composeDir[dir]
		sort.Slice(files, func(i, j int) bool { return composeRank(files[i]) < composeRank(files[j]) })
		abs := filepath.Join(dir, files[0])
		rel := l.tree.rel(abs)
		name := filepath.Base(dir)
		if l.referenced[abs] || l.byName[name] != nil && !l.byName[name].implied {
			continue
		}
		if len(files) > 1 {
			l.add(warningAt(l.tree.rel(filepath.Join(dir, files[1])), 0, "ignored: %s is the compose file of stack %s (as docker compose, capstan reads one of %s)",
				files[0], name, strings.Join(composeFileNames, ", ")))
		}
		implied = append(implied, &stackDecl{name: name, file: rel, dir: dirOf(rel), implied: true, composeFiles: []string{abs}})
	}
	for _, s := range implied {
		if msg := checkStackName(s.name); msg != "" {
			l.add(errorAt(s.file, 0, "cannot stand for a stack: name %s", msg))
			continue
		}
		if prev, ok := l.byName[s.name]; ok {
			l.add(errorAt(s.file, 0, "implies stack %q, which %s already implies; rename one, or declare the stack in a Stack document", s.name, prev.source()))
			continue
		}
		l.byName[s.name] = s
		l.stacks = append(l.stacks, s)
	}
	sort.Slice(l.stacks, func(i, j int) bool { return l.stacks[i].name < l.stacks[j].name })
}

func composeRank(name string) int {
	for i, n := range composeFileNames {
		if n == name {
			return i
		}
	}
	return len(composeFileNames)
}

type stackResult struct {
	resources []resource.Resource
	problems  Problems
}

// loadStacks loads every stack whose paths resolved, in parallel, and merges the
// results in name order so the outcome never depends on scheduling.
func (l *treeLoader) loadStacks() *resource.Set {
	results := make([]stackResult, len(l.stacks))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, s := range l.stacks {
		if l.failed[s.name] {
			if !s.invalid {
				// Some path did not resolve; still report what is wrong in the
				// env files that did.
				results[i] = stackResult{problems: l.readEnv(s, map[string]string{})}
			}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = l.loadStack(s)
		}()
	}
	wg.Wait()

	set := resource.NewSet()
	owner := map[resource.Key]string{} // key → stack that declared it
	for i, s := range l.stacks {
		set.Stacks[s.name] = s.settings()
		res := results[i]
		l.add(res.problems...)
		if res.problems.HasErrors() {
			l.failed[s.name] = true
			continue
		}
		for _, r := range res.resources {
			if r.Stack == "" {
				r.Stack = s.name
			}
			if r.Source == "" {
				r.Source = s.source()
			}
			prev, dup := set.Resources[r.Key]
			switch {
			case !dup:
				set.Resources[r.Key] = r
				owner[r.Key] = s.name
			case r.External && prev.External:
				// two stacks using the same external object
			case r.External:
				// another stack manages what this one uses: keep the managed one
			case prev.External:
				set.Resources[r.Key] = r
				owner[r.Key] = s.name
			default:
				file, line := splitSource(r.Source)
				l.add(errorAt(file, line, "%s is declared by stack %q and again by stack %q (first at %s); object names must be unique across stacks",
					r.Key, owner[r.Key], s.name, prev.Source))
				l.failed[s.name] = true
			}
		}
	}
	return set
}

func splitSource(src string) (string, int) {
	i := strings.LastIndexByte(src, ':')
	if i < 0 {
		return src, 0
	}
	var n int
	if _, err := fmt.Sscanf(src[i+1:], "%d", &n); err != nil {
		return src, 0
	}
	return src[:i], n
}

// loadStack loads one stack's compose files or bundle.
func (l *treeLoader) loadStack(s *stackDecl) stackResult {
	if s.bundleFile != "" {
		res, ps := loadBundle(s.name, l.tree.rel(s.bundleFile), s.bundleFile)
		return stackResult{res, ps}
	}
	env := map[string]string{}
	ps := l.readEnv(s, env)
	for k, v := range s.spec.Variables {
		env[k] = v
	}
	if ps.HasErrors() {
		return stackResult{nil, ps}
	}
	res, cps := safeLoadCompose(composeInput{Stack: s.name, Root: l.tree.root, Files: s.composeFiles, Env: env}, s.file)
	return stackResult{res, append(ps, cps...)}
}

// readEnv reads a stack's env files in order into env, later files overriding earlier
// ones.
func (l *treeLoader) readEnv(s *stackDecl, env map[string]string) Problems {
	var ps Problems
	for _, abs := range s.envFiles {
		vars, eps := parseEnvFile(l.tree.rel(abs), abs, env)
		ps = append(ps, eps...)
		for k, v := range vars {
			env[k] = v
		}
	}
	return ps
}

// safeLoadCompose keeps a converter bug from taking the process down: a daemon must
// report a bad source, not crash on it.
func safeLoadCompose(in composeInput, file string) (res []resource.Resource, ps Problems) {
	defer func() {
		if v := recover(); v != nil {
			res = nil
			ps = Problems{errorAt(file, 0, "internal error while loading the compose files of stack %s: %v (please report this as a capstan bug)", in.Stack, v)}
		}
	}()
	return loadCompose(in)
}

// checkDependencies reports dependsOn entries naming unknown stacks and dependency
// cycles.
func (l *treeLoader) checkDependencies() {
	for _, s := range l.stacks {
		for i, dep := range s.spec.DependsOn {
			if l.byName[dep] == nil && dep != "" && dep != s.name {
				p := fmt.Sprintf("spec.dependsOn[%d]", i)
				l.add(errorAt(s.file, s.at(p), "%s: stack %q is not declared%s", p, dep, knownList("stacks", mapKeys(l.byName))))
			}
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(s *stackDecl)
	visit = func(s *stackDecl) {
		state[s.name] = visiting
		path = append(path, s.name)
		for i, dep := range s.spec.DependsOn {
			d := l.byName[dep]
			if d == nil || dep == s.name {
				continue
			}
			switch state[dep] {
			case visiting:
				start := 0
				for j, n := range path {
					if n == dep {
						start = j
					}
				}
				cycle := append(append([]string(nil), path[start:]...), dep)
				p := fmt.Sprintf("spec.dependsOn[%d]", i)
				l.add(errorAt(s.file, s.at(p), "%s: dependency cycle %s; stacks can only wait for stacks that do not wait for them", p, strings.Join(cycle, " -> ")))
				for _, n := range cycle {
					l.failed[n] = true
				}
			case unvisited:
				visit(d)
			}
		}
		path = path[:len(path)-1]
		state[s.name] = done
	}
	for _, s := range l.stacks {
		if state[s.name] == unvisited {
			visit(s)
		}
	}
}

// addRoutes checks the routes and adds their listeners to the set.
func (l *treeLoader) addRoutes(set *resource.Set) {
	services := map[string]resource.Resource{}
	for k, r := range set.Resources {
		if k.Sink == resource.SinkSwarm && k.Kind == resource.KindService {
			services[k.Name] = r
		}
	}
	sort.SliceStable(l.routes, func(i, j int) bool {
		a, b := l.routes[i], l.routes[j]
		if a.file != b.file {
			return a.file < b.file
		}
		return a.line < b.line
	})
	res, ps := checkRoutes(l.routes, l.byName, l.failed, services)
	l.add(ps...)
	for _, r := range res {
		if err := set.Add(r); err != nil {
			l.add(errorAt(r.Source, 0, "%v", err))
		}
	}
}

// checkReservedLabels refuses dev.capstan.* labels written in the source: they are
// capstan's record of ownership and of what it applied, and a source that could set
// them could claim another instance's objects.
func (l *treeLoader) checkReservedLabels(set *resource.Set) {
	for _, k := range set.Keys() {
		r := set.Resources[k]
		if r.External {
			continue
		}
		for _, name := range sortedKeys(r.Labels()) {
			if strings.HasPrefix(name, "dev.capstan.") {
				file, line := splitSource(r.Source)
				l.add(errorAt(file, line, "%s %s: label %s is reserved: capstan sets dev.capstan.* labels itself", k.Kind, k.Name, name))
			}
		}
	}
}

// stamp writes capstan's ownership labels onto a managed Swarm object's own labels
// (never container labels: changing those would restart tasks). The spec hash is taken
// before stamping; SpecHash ignores dev.capstan.* labels anyway.
func stamp(r *resource.Resource, opts Options) {
	if r.External || r.Route != nil {
		return
	}
	hash := resource.SpecHash(*r)
	labels := func(in map[string]string) map[string]string {
		out := make(map[string]string, len(in)+3)
		for k, v := range in {
			out[k] = v
		}
		out[resource.LabelManagedBy] = opts.Instance
		if opts.Revision != "" {
			out[resource.LabelRevision] = opts.Revision
		}
		out[resource.LabelSpecHash] = hash
		return out
	}
	switch {
	case r.Service != nil:
		s := *r.Service
		s.Labels = labels(s.Labels)
		r.Service = &s
	case r.Network != nil:
		n := *r.Network
		n.Labels = labels(n.Labels)
		r.Network = &n
	case r.Secret != nil:
		s := *r.Secret
		s.Labels = labels(s.Labels)
		r.Secret = &s
	case r.Config != nil:
		c := *r.Config
		c.Labels = labels(c.Labels)
		r.Config = &c
	}
}
