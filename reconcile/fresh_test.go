package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// corpusDir is the compose conformance corpus: every feature capstan converts.
const corpusDir = "../manifests/testdata/conformance"

// corpusEnv is the interpolation environment of the corpus.
var corpusEnv = mustCorpusEnv(corpusDir + "/env.json")

// mustCorpusEnv reads the corpus's env.json, shared by the conformance, fresh-apply and
// fidelity tests so the three never disagree.
func mustCorpusEnv(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var env map[string]string
	if err := json.Unmarshal(b, &env); err != nil {
		panic(path + ": " + err.Error())
	}
	return env
}

// TestFreshApplyPlansNothing is the rule "a freshly applied stack diffs as zero changes"
// checked on the real engine for every file of the conformance corpus: load it, plan it
// against the live swarm, apply the plan with the real swarm sink, observe again, and
// plan again. The second plan must be empty: no change, no drift. The same specs read
// with insertDefaults (what `docker service inspect` shows) must compare equal too.
//
// Under -update it also writes testdata/fresh/<case>.json: the desired and observed
// objects, which TestFreshFixturesPlanNothing replays without an engine.
func TestFreshApplyPlansNothing(t *testing.T) {
	cli, _ := dockertest.Client(t)
	cases := corpusCases(t)
	for i, name := range sortedKeys(cases) {
		t.Run(name, func(t *testing.T) {
			freshApply(t, cli, i, name, cases[name])
		})
	}
}

// undeployable are corpus cases Swarm itself refuses, which the loader reports; they
// exist to compare conversions. They are skipped only while they fail to load.
var undeployable = map[string]string{
	"29-interpolation": "both ports publish ${HTTP_PORT}: Swarm refuses a published port used twice (the loader reports it)",
}

func freshApply(t *testing.T, cli *client.Client, index int, name string, files []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stack := dockertest.UniqueName(t, "rt")
	instance := "capstan-" + stack
	dockertest.Cleanup(t, cli, stack)

	desired, problems := loadCase(t, stack, instance, files)
	if problems.HasErrors() {
		if why, ok := undeployable[name]; ok {
			t.Skipf("%s: %v", why, problems)
		}
		t.Fatalf("load: %v", problems)
	}
	isolate(t, desired, stack, index)
	createExternals(ctx, t, cli, desired, stack)

	sink := swarmsink.New(cli, instance)
	opts := reconcile.Options{Instance: instance, Revision: "test@sha1:0000000000000000000000000000000000000000"}
	live, err := sink.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := reconcile.BuildPlan(desired, live, opts)
	if err != nil {
		t.Fatalf("first plan: %v", err)
	}
	if !p.HasChanges() {
		t.Fatalf("first plan has no changes")
	}
	if _, err := reconcile.Apply(ctx, p, map[string]reconcile.Sink{sink.Name(): sink}, reconcile.ApplyOptions{}); err != nil {
		t.Fatalf("apply: %v", err)
	}

	live, err = sink.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := reconcile.BuildPlan(desired, live, opts)
	if err != nil {
		t.Fatalf("second plan: %v", err)
	}
	if len(again.Changes) > 0 || len(again.Drift) > 0 {
		var b strings.Builder
		_ = reconcile.RenderText(&b, again)
		t.Errorf("a freshly applied stack plans changes (false drift):\n%s", b.String())
	}

	inspected := insertDefaults(ctx, t, cli, desired)
	for k, spec := range inspected {
		if d := reconcile.DiffService(*desired.Resources[k].Service, spec); len(d) > 0 {
			t.Errorf("%s read with insertDefaults differs from the desired spec: %+v", k, d)
		}
	}

	if *reconcile.UpdateFlag {
		writeFixture(t, name, stack, instance, desired, live, inspected)
	}
}

// corpusCases maps a case name to its compose files (NAME.yml, plus NAME.override.yml
// merged after it when present).
func corpusCases(t *testing.T) map[string][]string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(corpusDir, "*.yml"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no conformance corpus at %s: %v", corpusDir, err)
	}
	cases := map[string][]string{}
	for _, m := range matches {
		if strings.HasSuffix(m, ".override.yml") {
			continue
		}
		files := []string{filepath.Base(m)}
		if o := strings.TrimSuffix(m, ".yml") + ".override.yml"; fileExists(o) {
			files = append(files, filepath.Base(o))
		}
		cases[strings.TrimSuffix(filepath.Base(m), ".yml")] = files
	}
	return cases
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loadCase writes a source tree holding the corpus and one Stack document naming the
// case's files, and loads it with manifests.Load, as capstan itself would.
func loadCase(t *testing.T, stack, instance string, files []string) (*resource.Set, manifests.Problems) {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(filepath.Join(root, "conformance"), os.DirFS(corpusDir)); err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	fmt.Fprintf(&doc, "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  compose:\n", stack)
	for _, f := range files {
		fmt.Fprintf(&doc, "    - conformance/%s\n", f)
	}
	doc.WriteString("  variables:\n")
	for _, k := range sortedKeys(corpusEnv) {
		fmt.Fprintf(&doc, "    %s: %q\n", k, corpusEnv[k])
	}
	if err := os.WriteFile(filepath.Join(root, "stack.yaml"), []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Documents are only read from .yaml/.yml files that declare a capstan apiVersion:
	// the corpus files themselves are plain compose files.
	return manifests.Load(root, manifests.Options{Instance: instance, Revision: "test@sha1:0000000000000000000000000000000000000000"})
}

// isolate keeps the case from colliding with anything else on the engine: objects with
// global names (name: in compose, externals) get the stack name appended, and ingress
// ports move to a range of their own. Specs are re-hashed, as the loader would have.
func isolate(t *testing.T, set *resource.Set, stack string, index int) {
	t.Helper()
	renames := map[resource.Key]string{}
	ports := map[uint32]uint32{}
	for k, r := range set.Resources {
		if k.Kind == resource.KindService || strings.HasPrefix(k.Name, stack+"_") {
			continue
		}
		if r.External && k.Kind == resource.KindNetwork && k.Name == "host" {
			continue
		}
		renames[k] = k.Name + "-" + stack
	}
	for old, name := range renames {
		r := set.Resources[old]
		delete(set.Resources, old)
		r.Key.Name = name
		switch {
		case r.Network != nil:
		case r.Secret != nil:
			r.Secret.Name = name
		case r.Config != nil:
			r.Config.Name = name
		}
		set.Resources[r.Key] = r
	}
	for k, r := range set.Resources {
		if r.Service == nil {
			continue
		}
		s := r.Service
		for i := range s.TaskTemplate.Networks {
			if n, ok := renames[resource.NetworkKey(s.TaskTemplate.Networks[i].Target)]; ok {
				s.TaskTemplate.Networks[i].Target = n
			}
		}
		if cs := s.TaskTemplate.ContainerSpec; cs != nil {
			for _, ref := range cs.Secrets {
				if n, ok := renames[resource.SecretKey(ref.SecretName)]; ok {
					ref.SecretName = n
				}
			}
			for _, ref := range cs.Configs {
				if n, ok := renames[resource.ConfigKey(ref.ConfigName)]; ok {
					ref.ConfigName = n
				}
			}
		}
		if s.EndpointSpec != nil {
			for i := range s.EndpointSpec.Ports {
				if p := &s.EndpointSpec.Ports[i]; p.PublishedPort != 0 && p.PublishMode != swarm.PortConfigPublishModeHost {
					if _, ok := ports[p.PublishedPort]; !ok {
						ports[p.PublishedPort] = uint32(20000 + index*100 + len(ports))
					}
					p.PublishedPort = ports[p.PublishedPort]
				}
			}
		}
		set.Resources[k] = r
	}
	// Swarm refuses an empty config or secret (docker stack deploy fails the same way).
	for k, r := range set.Resources {
		switch {
		case r.Config != nil && len(r.Config.Data) == 0:
			r.Config.Data = []byte("\n")
		case r.Secret != nil && len(r.Secret.Data) == 0 && !r.External:
			r.Secret.Data = []byte("\n")
		}
		set.Resources[k] = r
	}
	for k, r := range set.Resources {
		if labels := r.Labels(); labels != nil && labels[resource.LabelSpecHash] != "" {
			labels[resource.LabelSpecHash] = resource.SpecHash(r)
		}
		set.Resources[k] = r
	}
}

// createExternals creates the case's external networks, secrets and configs, labelled
// with the stack so the cleanup removes them, but not managed by capstan.
func createExternals(ctx context.Context, t *testing.T, cli *client.Client, set *resource.Set, stack string) {
	t.Helper()
	labels := map[string]string{resource.LabelNamespace: stack}
	for _, k := range set.Keys() {
		r := set.Resources[k]
		if !r.External {
			continue
		}
		var err error
		switch k.Kind {
		case resource.KindNetwork:
			if k.Name == "host" {
				continue
			}
			_, err = cli.NetworkCreate(ctx, k.Name, network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true, Labels: labels})
		case resource.KindSecret:
			_, err = cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: k.Name, Labels: labels}, Data: []byte("external")})
		case resource.KindConfig:
			_, err = cli.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: k.Name, Labels: labels}, Data: []byte("external")})
		}
		if err != nil {
			t.Fatalf("create external %s: %v", k, err)
		}
	}
}

// insertDefaults reads the desired services back as `docker service inspect` does
// (insertDefaults=true), network IDs mapped to names as the sink maps them.
func insertDefaults(ctx context.Context, t *testing.T, cli *client.Client, set *resource.Set) map[resource.Key]swarm.ServiceSpec {
	t.Helper()
	nets, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, n := range nets {
		names[n.ID] = n.Name
	}
	out := map[resource.Key]swarm.ServiceSpec{}
	for k, r := range set.Resources {
		if r.Service == nil {
			continue
		}
		svc, _, err := cli.ServiceInspectWithRaw(ctx, k.Name, swarm.ServiceInspectOptions{InsertDefaults: true})
		if err != nil {
			t.Fatalf("inspect %s: %v", k, err)
		}
		spec := svc.Spec
		for i, n := range spec.TaskTemplate.Networks {
			name, ok := names[n.Target]
			if !ok {
				// Predefined networks (host) have a swarm-side ID the list does not show.
				nw, err := cli.NetworkInspect(ctx, n.Target, network.InspectOptions{Scope: "swarm"})
				if err != nil {
					t.Fatalf("inspect network %s of %s: %v", n.Target, k, err)
				}
				name = nw.Name
			}
			spec.TaskTemplate.Networks[i].Target = name
		}
		out[k] = spec
	}
	return out
}

// Fixture is one case of testdata/fresh: what was desired, what the swarm sink observed
// after applying it, and the services as `docker service inspect` shows them. The
// random stack name is replaced by "fx" so that regenerating gives stable names.
type Fixture = reconcile.FreshFixture

func writeFixture(t *testing.T, name, stack, instance string, desired, live *resource.Set, inspected map[resource.Key]swarm.ServiceSpec) {
	t.Helper()
	fx := Fixture{Instance: instance}
	for _, s := range desired.StackNames() {
		fx.Stacks = append(fx.Stacks, desired.Stacks[s])
	}
	for _, k := range desired.Keys() {
		fx.Desired = append(fx.Desired, desired.Resources[k])
	}
	for _, k := range live.Keys() {
		r := live.Resources[k]
		if _, declared := desired.Resources[k]; declared || r.Stack == stack {
			r.Status = nil // task counts vary with timing; health has its own fixtures
			fx.Live = append(fx.Live, r)
		}
	}
	for _, k := range sortedResourceKeys(inspected) {
		fx.Inspected = append(fx.Inspected, reconcile.InspectedService{Key: k, Spec: inspected[k]})
	}
	b, err := json.MarshalIndent(fx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.ReplaceAll(string(b), stack, "fx"))
	path := filepath.Join("testdata", "fresh", name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), fs.FileMode(0o644)); err != nil {
		t.Fatal(err)
	}
}

func sortedResourceKeys[V any](m map[resource.Key]V) []resource.Key {
	keys := make([]resource.Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}
