package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/resource"
)

// The fidelity test holds capstan to the rule of design §2 on the engine itself: for every
// file of the compose conformance corpus, what Swarm stores after `capstan apply` is what
// it stores after `docker stack deploy --resolve-image never` of the same file. The
// conformance test in manifests compares the specs the two converters produce; this one
// compares what survives the trip through capstan's sink and the Engine API, and it runs
// the real docker CLI, not its packages.
//
// It also checks design §4's "a freshly applied stack must diff as zero changes": the
// fields Swarm fills in (Runtime, Isolation, network IDs, endpoint mode, the default port
// protocol...) must never show as drift.

// corpusDir is the compose conformance corpus, shared with manifests/conformance_test.go.
var corpusDir = filepath.Join("..", "..", "manifests", "testdata", "conformance")

// corpusEnv is the interpolation environment of the corpus.
var corpusEnv = mustCorpusEnv(filepath.Join(corpusDir, "env.json"))

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

// engineCannotRun are corpus cases Swarm itself refuses, whoever deploys them; the corpus
// keeps them to compare conversions.
var engineCannotRun = map[string]string{}

// TestFidelityCorpus runs, for each corpus case, one stack A through capstan and one stack
// B through docker stack deploy, one after the other (the corpus publishes fixed ingress
// ports and names objects with name:, which two stacks cannot hold at once), and compares
// what Swarm stored for both.
//
// Every image the corpus names is tagged as the test image so that no task tries a
// registry; tasks still fail where the corpus asks for what the image or this node lacks
// (an entrypoint /bin/sh, bind mounts of missing paths, an NFS volume, a gpu). Only specs
// are compared, so that is fine, and neither side waits for its tasks.
func TestFidelityCorpus(t *testing.T) {
	cli, _ := dockertest.Client(t)
	dockertest.Image(t)
	if _, err := exec.LookPath("docker"); err != nil {
		if os.Getenv(dockertest.RequireDockerEnv) == "1" {
			t.Fatalf("the docker CLI is needed to run docker stack deploy: %v", err)
		}
		t.Skipf("skipping: the docker CLI is needed to run docker stack deploy: %v", err)
	}
	cases := fidelityCases(t)
	names := make([]string, 0, len(cases))
	for name := range cases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := engineCannotRun[name]; ok {
				t.Skip(why)
			}
			runFidelityCase(t, cli, cases[name])
		})
	}
}

// fidelityCases maps a case name to its compose files: NAME.yml, then NAME.override.yml
// when there is one (merged in that order, as -c NAME.yml -c NAME.override.yml).
func fidelityCases(t *testing.T) map[string][]string {
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

func runFidelityCase(t *testing.T, cli *client.Client, files []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stackA, stackB := dockertest.UniqueName(t, "fid"), dockertest.UniqueName(t, "fid")
	instance := "capstan-" + stackA // apart from any other capstan on this engine

	// One directory serves both sides, so relative bind mounts and secret files resolve to
	// the same paths.
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "conformance"), os.DirFS(corpusDir)); err != nil {
		t.Fatal(err)
	}
	fillEmptyFiles(t, filepath.Join(dir, "conformance", "files"))
	writeFidelityStack(t, dir, stackA, files)
	desired, problems := manifests.Load(dir, manifests.Options{Instance: instance})
	if problems.HasErrors() {
		t.Fatalf("the corpus case does not load: %v", problems)
	}
	tagCorpusImages(t, desired)
	// Cleanups run last-registered first: stacks go, then the volumes their tasks made,
	// then the externals they used.
	createExternals(ctx, t, cli, desired)
	removeVolumesAfter(t, cli, desired, stackA, stackB)
	dockertest.Cleanup(t, cli, stackA)
	dockertest.Cleanup(t, cli, stackB)

	out, errOut, code := runCapstan(t, "apply", "--instance", instance, "--source", dir, "--timeout", "0")
	if code != 0 {
		t.Fatalf("capstan apply exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	t.Run("no drift after apply", func(t *testing.T) {
		out, errOut, code := runCapstan(t, "diff", "--detailed-exitcode", "--instance", instance, "--source", dir)
		if code != 0 || !strings.Contains(out, "No changes") {
			t.Errorf("diff right after apply exited %d, want 0 with \"No changes\" (a false drift is a normalizer bug)\nstdout:\n%s\nstderr:\n%s",
				code, out, errOut)
		}
	})
	gotA := readStored(ctx, t, cli, stackA)
	if len(gotA.Services) == 0 {
		t.Fatalf("capstan apply left no services of stack %s", stackA)
	}
	if err := dockertest.RemoveStack(ctx, cli, stackA); err != nil {
		t.Fatalf("remove stack %s before deploying %s: %v", stackA, stackB, err)
	}

	dockerStackDeploy(ctx, t, dir, files, stackB)
	gotB := readStored(ctx, t, cli, stackB)

	t.Run("same as docker stack deploy", func(t *testing.T) {
		want := gotB
		got := gotA.renamed(stackA, stackB)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Swarm stores different objects for capstan apply (stack %s, renamed) and docker stack deploy --resolve-image never (stack %s) (-docker +capstan):\n%s",
				stackA, stackB, diff)
		}
	})
}

// fillEmptyFiles gives each empty file in dir one newline. Swarm refuses an empty secret
// or config ("data must be larger than 0"), from docker stack deploy as from capstan; the
// corpus keeps files/empty.conf to compare conversions, and with one byte its case
// (15-configs) still runs on the engine, the same content on both sides.
func fillEmptyFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Size() == 0 {
			if err := os.WriteFile(p, []byte("\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// writeFidelityStack writes the Stack document naming the case's compose files, with the
// corpus environment as its variables.
func writeFidelityStack(t *testing.T, dir, stack string, files []string) {
	t.Helper()
	var doc strings.Builder
	fmt.Fprintf(&doc, "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n", stack)
	// The peer runs with --resolve-image never; say the same here rather than rely on a
	// default that might one day query a registry.
	doc.WriteString("  resolveImage: never\n  compose:\n")
	for _, f := range files {
		fmt.Fprintf(&doc, "    - conformance/%s\n", f)
	}
	doc.WriteString("  variables:\n")
	keys := make([]string, 0, len(corpusEnv))
	for k := range corpusEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&doc, "    %s: %q\n", k, corpusEnv[k])
	}
	if err := os.WriteFile(filepath.Join(dir, "stack.yaml"), []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tagCorpusImages tags the test image under every image name the case uses. A digest
// reference cannot be a tag: its tasks ask the node to pull and fail, which changes no
// spec.
func tagCorpusImages(t *testing.T, desired *resource.Set) {
	t.Helper()
	var names []string
	for _, r := range desired.Resources {
		if r.Service == nil || r.Service.TaskTemplate.ContainerSpec == nil {
			continue
		}
		if img := r.Service.TaskTemplate.ContainerSpec.Image; img != "" && !strings.Contains(img, "@") && !contains(names, img) {
			names = append(names, img)
		}
	}
	sort.Strings(names)
	dockertest.TagAs(t, names...)
}

// createExternals creates the swarm-scoped networks, secrets and configs the case declares
// external, under the names the file uses, unless they exist already (then they are used
// and left alone). What it creates is removed when the test ends.
func createExternals(ctx context.Context, t *testing.T, cli *client.Client, desired *resource.Set) {
	t.Helper()
	for _, k := range desired.Keys() {
		if !desired.Resources[k].External {
			continue
		}
		switch k.Kind {
		case resource.KindNetwork:
			if k.Name == "host" || k.Name == "bridge" || k.Name == "none" {
				continue // predefined on every node
			}
			nw, err := cli.NetworkInspect(ctx, k.Name, network.InspectOptions{})
			if err == nil {
				if nw.Scope != "swarm" {
					t.Fatalf("external network %s exists with scope %q; the case needs a swarm-scoped one: remove it (docker network rm %s)", k.Name, nw.Scope, k.Name)
				}
				continue
			}
			resp, err := cli.NetworkCreate(ctx, k.Name, network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true})
			if err != nil {
				t.Fatalf("create external network %s: %v", k.Name, err)
			}
			t.Cleanup(func() {
				removeExternal(t, "network", k.Name, func(ctx context.Context) error { return cli.NetworkRemove(ctx, resp.ID) })
			})
		case resource.KindSecret:
			if _, _, err := cli.SecretInspectWithRaw(ctx, k.Name); err == nil {
				continue
			}
			resp, err := cli.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: k.Name}, Data: []byte("external\n")})
			if err != nil {
				t.Fatalf("create external secret %s: %v", k.Name, err)
			}
			t.Cleanup(func() {
				removeExternal(t, "secret", k.Name, func(ctx context.Context) error { return cli.SecretRemove(ctx, resp.ID) })
			})
		case resource.KindConfig:
			if _, _, err := cli.ConfigInspectWithRaw(ctx, k.Name); err == nil {
				continue
			}
			resp, err := cli.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: k.Name}, Data: []byte("external\n")})
			if err != nil {
				t.Fatalf("create external config %s: %v", k.Name, err)
			}
			t.Cleanup(func() {
				removeExternal(t, "config", k.Name, func(ctx context.Context) error { return cli.ConfigRemove(ctx, resp.ID) })
			})
		}
	}
}

// removeExternal retries a removal while the engine still sees the object in use by the
// tasks of just-removed services.
func removeExternal(t *testing.T, kind, name string, remove func(context.Context) error) {
	t.Helper()
	if err := retryUntilGone(remove); err != nil {
		t.Errorf("remove external %s %s: %v", kind, name, err)
	}
}

// retryUntilGone calls remove until it succeeds or reports the object gone, for up to a
// minute.
func retryUntilGone(remove func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		err := remove(ctx)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// removeVolumesAfter removes, when the test ends, the named volumes the case's tasks made
// on this node: those of either stack and the external names the file mounts, unless they
// existed before.
func removeVolumesAfter(t *testing.T, cli *client.Client, desired *resource.Set, stackA, stackB string) {
	t.Helper()
	existing := map[string]bool{}
	list, err := cli.VolumeList(context.Background(), volume.ListOptions{})
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
	for _, v := range list.Volumes {
		existing[v.Name] = true
	}
	var names []string
	for _, r := range desired.Resources {
		if r.Service == nil || r.Service.TaskTemplate.ContainerSpec == nil {
			continue
		}
		for _, m := range r.Service.TaskTemplate.ContainerSpec.Mounts {
			if m.Type != "volume" || m.Source == "" {
				continue
			}
			for _, name := range []string{m.Source, strings.Replace(m.Source, stackA+"_", stackB+"_", 1)} {
				if !existing[name] && !contains(names, name) {
					names = append(names, name)
				}
			}
		}
	}
	t.Cleanup(func() {
		for _, name := range names {
			if err := retryUntilGone(func(ctx context.Context) error { return cli.VolumeRemove(ctx, name, false) }); err != nil {
				t.Errorf("remove volume %s: %v", name, err)
			}
		}
	})
}

// dockerStackDeploy runs the real docker CLI, with the corpus environment as the only
// interpolation values it can see.
func dockerStackDeploy(ctx context.Context, t *testing.T, dir string, files []string, stack string) {
	t.Helper()
	args := []string{"stack", "deploy", "--resolve-image", "never", "--detach=true"}
	for _, f := range files {
		args = append(args, "-c", filepath.Join("conformance", f))
	}
	cmd := exec.CommandContext(ctx, "docker", append(args, stack)...)
	cmd.Dir = dir
	cmd.Env = dockerProcessEnv(corpusEnv)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(append(args, stack), " "), err, out)
	}
}

// dockerProcessEnv is vars plus what the docker CLI needs to find its engine and its
// config (PATH, HOME, DOCKER_*), and nothing else: the corpus refers to variables that
// must stay unset.
func dockerProcessEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || strings.HasPrefix(k, "DOCKER_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// storedStack is what Swarm stored for one stack, as generic JSON so that every field the
// Engine returns takes part, with what necessarily differs between two deployments of
// the same file taken out: object IDs (network, secret and config references are shown
// by name) and capstan's own dev.capstan.* labels. Versions, timestamps and the
// Endpoint Swarm allocated are not part of the specs compared.
type storedStack struct {
	Services map[string]any // service name → Spec
	Networks map[string]any // network name → the fields a network is created with
	Secrets  map[string]any // secret name → Spec (Swarm never returns the data)
	Configs  map[string]any // config name → Spec
}

// renamed returns s with every occurrence of stack from replaced by to.
func (s storedStack) renamed(from, to string) storedStack {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // s came from JSON
	}
	var out storedStack
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(b), from, to)), &out); err != nil {
		panic(err)
	}
	return out
}

func readStored(ctx context.Context, t *testing.T, cli *client.Client, stack string) storedStack {
	t.Helper()
	s, err := readStoredStack(ctx, cli, stack)
	if err != nil {
		t.Fatalf("read what Swarm stored for stack %s: %v", stack, err)
	}
	return s
}

func readStoredStack(ctx context.Context, cli *client.Client, stack string) (storedStack, error) {
	out := storedStack{Services: map[string]any{}, Networks: map[string]any{}, Secrets: map[string]any{}, Configs: map[string]any{}}
	byLabel := filters.NewArgs(filters.Arg("label", resource.LabelNamespace+"="+stack))

	ids, err := objectNames(ctx, cli)
	if err != nil {
		return out, err
	}
	services, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: byLabel})
	if err != nil {
		return out, fmt.Errorf("list services: %w", err)
	}
	for _, svc := range services {
		_, raw, err := cli.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			return out, fmt.Errorf("inspect service %s: %w", svc.Spec.Name, err)
		}
		var doc struct{ Spec map[string]any }
		if err := json.Unmarshal(raw, &doc); err != nil {
			return out, fmt.Errorf("decode service %s: %w", svc.Spec.Name, err)
		}
		if err := ids.nameReferences(ctx, cli, doc.Spec); err != nil {
			return out, fmt.Errorf("service %s: %w", svc.Spec.Name, err)
		}
		dropCapstanLabels(doc.Spec)
		out.Services[svc.Spec.Name] = doc.Spec
	}

	networks, err := cli.NetworkList(ctx, network.ListOptions{Filters: byLabel})
	if err != nil {
		return out, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range networks {
		// Right after creation, under load, the engine can list a swarm network before
		// the allocator has filled in its drivers; read it again until it has.
		for i := 0; i < 20 && (n.Driver == "" || n.IPAM.Driver == ""); i++ {
			time.Sleep(100 * time.Millisecond)
			again, err := cli.NetworkInspect(ctx, n.ID, network.InspectOptions{Scope: "swarm"})
			if err != nil {
				return out, fmt.Errorf("inspect network %s: %w", n.Name, err)
			}
			n = again
		}
		// IPAM.Config and the VXLAN ID are left out: Swarm allocates them (a subnet
		// where the file names none), and two networks never get the same.
		opts := map[string]string{}
		for k, v := range n.Options {
			if k != "com.docker.network.driver.overlay.vxlanid_list" {
				opts[k] = v
			}
		}
		fields := map[string]any{
			"Driver": n.Driver, "Scope": n.Scope, "EnableIPv6": n.EnableIPv6, "Internal": n.Internal,
			"Attachable": n.Attachable, "Ingress": n.Ingress, "Options": opts, "Labels": n.Labels,
			"IPAM.Driver": n.IPAM.Driver, "IPAM.Options": n.IPAM.Options,
		}
		m, err := asJSON(fields)
		if err != nil {
			return out, err
		}
		dropCapstanLabels(m)
		out.Networks[n.Name] = m
	}

	secrets, err := cli.SecretList(ctx, swarm.SecretListOptions{Filters: byLabel})
	if err != nil {
		return out, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secrets {
		m, err := asJSON(s.Spec)
		if err != nil {
			return out, err
		}
		dropCapstanLabels(m)
		out.Secrets[s.Spec.Name] = m
	}
	configs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: byLabel})
	if err != nil {
		return out, fmt.Errorf("list configs: %w", err)
	}
	for _, c := range configs {
		m, err := asJSON(c.Spec)
		if err != nil {
			return out, err
		}
		dropCapstanLabels(m)
		out.Configs[c.Spec.Name] = m
	}
	return out, nil
}

func asJSON(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// dropCapstanLabels removes dev.capstan.* keys from m["Labels"].
func dropCapstanLabels(m map[string]any) {
	labels, _ := m["Labels"].(map[string]any)
	for k := range labels {
		if strings.HasPrefix(k, "dev.capstan.") {
			delete(labels, k)
		}
	}
}

// idNames maps the IDs of every network, secret and config on the engine to their names.
type idNames struct {
	networks, secrets, configs map[string]string
}

func objectNames(ctx context.Context, cli *client.Client) (idNames, error) {
	ids := idNames{networks: map[string]string{}, secrets: map[string]string{}, configs: map[string]string{}}
	networks, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return ids, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range networks {
		ids.networks[n.ID] = n.Name
	}
	secrets, err := cli.SecretList(ctx, swarm.SecretListOptions{})
	if err != nil {
		return ids, fmt.Errorf("list secrets: %w", err)
	}
	for _, s := range secrets {
		ids.secrets[s.ID] = s.Spec.Name
	}
	configs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		return ids, fmt.Errorf("list configs: %w", err)
	}
	for _, c := range configs {
		ids.configs[c.ID] = c.Spec.Name
	}
	return ids, nil
}

// nameReferences replaces, in a raw service spec, the IDs of networks, secrets and
// configs with "name:<name>": IDs differ between two deployments, names must not.
func (ids idNames) nameReferences(ctx context.Context, cli *client.Client, spec map[string]any) error {
	tt, _ := spec["TaskTemplate"].(map[string]any)
	attachments := [][]any{}
	if nets, ok := tt["Networks"].([]any); ok {
		attachments = append(attachments, nets)
	}
	if nets, ok := spec["Networks"].([]any); ok { // the deprecated place, in case
		attachments = append(attachments, nets)
	}
	for _, nets := range attachments {
		for _, n := range nets {
			att, _ := n.(map[string]any)
			id, _ := att["Target"].(string)
			name, ok := ids.networks[id]
			if !ok {
				// Predefined networks (host) have a swarm-side ID the list does not show.
				nw, err := cli.NetworkInspect(ctx, id, network.InspectOptions{Scope: "swarm"})
				if err != nil {
					return fmt.Errorf("network %s: %w", id, err)
				}
				name = nw.Name
			}
			att["Target"] = "name:" + name
		}
	}
	cs, _ := tt["ContainerSpec"].(map[string]any)
	for _, ref := range [...]struct {
		list, idKey string
		names       map[string]string
	}{{"Secrets", "SecretID", ids.secrets}, {"Configs", "ConfigID", ids.configs}} {
		refs, _ := cs[ref.list].([]any)
		for _, r := range refs {
			m, _ := r.(map[string]any)
			id, _ := m[ref.idKey].(string)
			name, ok := ref.names[id]
			if !ok {
				return errors.New(ref.idKey + " " + id + " names no object on the engine")
			}
			m[ref.idKey] = "name:" + name
		}
	}
	return nil
}
