package manifests

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/docker/cli/cli/compose/convert"
	cliloader "github.com/docker/cli/cli/compose/loader"
	"github.com/docker/cli/cli/compose/schema"
	composetypes "github.com/docker/cli/cli/compose/types"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

// The conformance test holds capstan's compose conversion against docker stack deploy's
// own: docker/cli v28.5.2 cli/compose/loader and cli/compose/convert, imported here and
// only here (never linked into the binary). Every file in testdata/conformance is a v3
// file docker stack deploy accepts; both sides load it with the same environment, and
// the service, network, secret and config specs must be equal, field for field.
//
// A file NAME.yml with a sibling NAME.override.yml is loaded as the two files merged in
// that order (docker stack deploy -c NAME.yml -c NAME.override.yml).

const conformanceStack = "conf"

// conformanceEnv is the interpolation environment both sides see.
var conformanceEnv = mustCorpusEnv("testdata/conformance/env.json")

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

// stackOutput is what docker stack deploy would send for one stack.
type stackOutput struct {
	Services         map[string]swarm.ServiceSpec
	Networks         map[string]network.CreateOptions
	ExternalNetworks []string
	Secrets          map[string]swarm.SecretSpec
	Configs          map[string]swarm.ConfigSpec
}

func conformanceCases(t *testing.T, dir string) (root string, cases map[string][]string) {
	t.Helper()
	root, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	matches, err := filepath.Glob(filepath.Join(root, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cases = map[string][]string{}
	for _, m := range matches {
		if strings.HasSuffix(m, ".override.yml") {
			continue
		}
		files := []string{m}
		if o := strings.TrimSuffix(m, ".yml") + ".override.yml"; fileExists(o) {
			files = append(files, o)
		}
		cases[strings.TrimSuffix(filepath.Base(m), ".yml")] = files
	}
	return root, cases
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestConformance(t *testing.T) {
	runConformance(t, filepath.Join("testdata", "conformance"), 25)
}

// TestConformanceWithoutEngine runs the same comparison on files the engine of the
// fidelity test (cmd/capstan) cannot run: secret driver plugins, Windows settings.
func TestConformanceWithoutEngine(t *testing.T) {
	runConformance(t, filepath.Join("testdata", "compose", "conformance-no-engine"), 2)
}

func runConformance(t *testing.T, dir string, minCases int) {
	root, cases := conformanceCases(t, dir)
	if len(cases) < minCases {
		t.Fatalf("%s has %d files; it must keep at least %d", dir, len(cases), minCases)
	}
	for _, name := range sortedComposeKeys(cases) {
		files := cases[name]
		t.Run(name, func(t *testing.T) {
			want := dockerStackDeploy(t, files, conformanceEnv)

			res, probs := loadCompose(composeInput{Stack: conformanceStack, Root: root, Files: files, Env: conformanceEnv})
			for _, p := range probs {
				t.Logf("capstan: %s", p)
			}
			if probs.HasErrors() {
				t.Fatalf("capstan refused a file docker stack deploy accepts:\n%s", probs)
			}
			got := capstanOutput(t, res)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("capstan differs from docker stack deploy (-docker +capstan):\n%s", diff)
			}
		})
	}
}

// dockerStackDeploy runs docker stack deploy's load and convert steps
// (cli/command/stack/loader.LoadComposefile and swarm.deployCompose) without a daemon.
func dockerStackDeploy(t *testing.T, files []string, env map[string]string) stackOutput {
	t.Helper()
	details := composetypes.ConfigDetails{WorkingDir: filepath.Dir(files[0]), Environment: env}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dict, err := cliloader.ParseYAML(data)
		if err != nil {
			t.Fatalf("docker/cli: %s: %v", f, err)
		}
		details.ConfigFiles = append(details.ConfigFiles, composetypes.ConfigFile{Filename: f, Config: dict})
	}
	details.Version = schema.Version(details.ConfigFiles[0].Config)
	cfg, err := cliloader.Load(details)
	if err != nil {
		t.Fatalf("docker/cli refuses the file, so it does not belong in the corpus: %v", err)
	}
	for _, s := range cfg.Services {
		if s.Image == "" {
			t.Fatalf("docker/cli: service %s has no image", s.Name)
		}
	}

	ns := convert.NewNamespace(conformanceStack)
	out := stackOutput{
		Networks: map[string]network.CreateOptions{},
		Secrets:  map[string]swarm.SecretSpec{},
		Configs:  map[string]swarm.ConfigSpec{},
	}

	serviceNetworks := map[string]struct{}{}
	for _, s := range cfg.Services {
		if len(s.Networks) == 0 {
			serviceNetworks["default"] = struct{}{}
		}
		for n := range s.Networks {
			serviceNetworks[n] = struct{}{}
		}
	}
	networks, externals := convert.Networks(ns, cfg.Networks, serviceNetworks)
	out.Networks = networks
	for _, n := range externals {
		// validateExternalNetworks skips host, bridge and none: they exist on every node.
		if composeUserDefined(n) {
			out.ExternalNetworks = append(out.ExternalNetworks, n)
		}
	}
	sort.Strings(out.ExternalNetworks)

	secrets, err := convert.Secrets(ns, cfg.Secrets)
	if err != nil {
		t.Fatalf("docker/cli: secrets: %v", err)
	}
	for _, s := range secrets {
		out.Secrets[s.Name] = s
	}
	configs, err := convert.Configs(ns, cfg.Configs)
	if err != nil {
		t.Fatalf("docker/cli: configs: %v", err)
	}
	for _, c := range configs {
		out.Configs[c.Name] = c
	}

	services, err := convert.Services(context.Background(), ns, cfg, fakeSwarmObjects{})
	if err != nil {
		t.Fatalf("docker/cli: services: %v", err)
	}
	out.Services = map[string]swarm.ServiceSpec{}
	for _, spec := range services {
		// capstan leaves secret and config IDs to the sink, which resolves them at apply
		// time; docker/cli resolved them against the fake daemon.
		for _, s := range spec.TaskTemplate.ContainerSpec.Secrets {
			s.SecretID = ""
		}
		for _, c := range spec.TaskTemplate.ContainerSpec.Configs {
			c.ConfigID = ""
		}
		// A credential spec names its config by ID in docker/cli's output and by name in
		// capstan's (the sink swaps in the ID); the fake IDs are "id-" + name.
		if cs := spec.TaskTemplate.ContainerSpec.Privileges.CredentialSpec; cs != nil && cs.Config != "" {
			cs.Config = strings.TrimPrefix(cs.Config, "id-")
		}
		out.Services[spec.Name] = spec
	}
	return out
}

func capstanOutput(t *testing.T, res []resource.Resource) stackOutput {
	t.Helper()
	out := stackOutput{
		Services: map[string]swarm.ServiceSpec{},
		Networks: map[string]network.CreateOptions{},
		Secrets:  map[string]swarm.SecretSpec{},
		Configs:  map[string]swarm.ConfigSpec{},
	}
	for _, r := range res {
		if r.Stack != conformanceStack {
			t.Errorf("%s: Stack = %q, want %q", r.Key, r.Stack, conformanceStack)
		}
		switch {
		case r.Service != nil:
			out.Services[r.Key.Name] = *r.Service
		case r.Network != nil && r.External:
			out.ExternalNetworks = append(out.ExternalNetworks, r.Key.Name)
		case r.Network != nil:
			out.Networks[r.Key.Name] = *r.Network
		case r.Secret != nil && !r.External:
			out.Secrets[r.Key.Name] = *r.Secret
		case r.Config != nil && !r.External:
			out.Configs[r.Key.Name] = *r.Config
		}
	}
	sort.Strings(out.ExternalNetworks)
	return out
}

// fakeSwarmObjects answers the secret and config lookups convert.Services makes: every
// requested name exists, with a made-up ID.
type fakeSwarmObjects struct {
	client.APIClient
}

func (fakeSwarmObjects) ClientVersion() string { return "1.41" }

func (fakeSwarmObjects) SecretList(_ context.Context, opts swarm.SecretListOptions) ([]swarm.Secret, error) {
	var out []swarm.Secret
	for _, name := range opts.Filters.Get("name") {
		out = append(out, swarm.Secret{ID: "id-" + name, Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: name}}})
	}
	return out, nil
}

func (fakeSwarmObjects) ConfigList(_ context.Context, opts swarm.ConfigListOptions) ([]swarm.Config, error) {
	var out []swarm.Config
	for _, name := range opts.Filters.Get("name") {
		out = append(out, swarm.Config{ID: "id-" + name, Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name}}})
	}
	return out, nil
}
