package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

// srcTree writes files (slash-separated names relative to the root) into a temporary
// source tree and returns its root.
func srcTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeFile(t, filepath.Join(root, filepath.FromSlash(name)), content)
	}
	return root
}

func mustLoad(t *testing.T, root string, opts Options) *resource.Set {
	t.Helper()
	set, problems := Load(root, opts)
	if problems.HasErrors() || set == nil {
		t.Fatalf("Load failed:\n%v", problems)
	}
	return set
}

func stackDoc(name, spec string) string {
	return "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: " + name + "\nspec:\n" + spec
}

const oneServiceDAB = `{"Version": "0.1", "Services": {"web": {"Image": "web:1", "Ports": [{"Protocol": "tcp", "Port": 80}]}}}`

func TestDiscoveryAndPrecedence(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		wantStacks map[string]string // stack → Source
		wantKeys   []string
	}{
		{
			name:       "bare dab is a stack with defaults",
			files:      map[string]string{"deploy/web.dab": oneServiceDAB},
			wantStacks: map[string]string{"web": "deploy/web.dab"},
			wantKeys:   []string{"swarm/service/web_web"},
		},
		{
			name: "a Stack document of the same name takes precedence over NAME.dab",
			files: map[string]string{
				"web.dab":    oneServiceDAB,
				"stack.yaml": stackDoc("web", "  bundle: other.dab\n"),
				"other.dab":  `{"Version": "0.1", "Services": {"api": {"Image": "api:1"}}}`,
			},
			wantStacks: map[string]string{"web": "stack.yaml"},
			wantKeys:   []string{"swarm/service/web_api"},
		},
		{
			name: "a bundle a Stack document uses is not also a stack of its own",
			files: map[string]string{
				"bundles/legacy.dab": oneServiceDAB,
				"stack.yaml":         stackDoc("shop", "  bundle: bundles/legacy.dab\n"),
			},
			wantStacks: map[string]string{"shop": "stack.yaml"},
			wantKeys:   []string{"swarm/service/shop_web"},
		},
		{
			name: "a symlink that stays inside the tree is fine",
			files: map[string]string{
				"real/app.dab": oneServiceDAB,
				"stack.yaml":   stackDoc("app", "  bundle: link/app.dab\n"),
			},
			wantStacks: map[string]string{"app": "stack.yaml"},
			wantKeys:   []string{"swarm/service/app_web"},
		},
		{
			name: "documents in a multi-document file, JSON style and comments",
			files: map[string]string{
				"all.yml": "# capstan manifests\n---\n" + stackDoc("a", "  bundle: a.dab\n") +
					"---\n{\"apiVersion\": \"capstan.dev/v1alpha1\", \"kind\": \"Stack\", \"metadata\": {\"name\": \"b\"}, \"spec\": {\"bundle\": \"a.dab\"}}\n---\n",
				"a.dab": oneServiceDAB,
			},
			wantStacks: map[string]string{"a": "all.yml", "b": "all.yml"},
			wantKeys:   []string{"swarm/service/a_web", "swarm/service/b_web"},
		},
		{
			name: "other YAML is not a manifest",
			files: map[string]string{
				".github/workflows/ci.yml": "on: push\njobs: {}\n",
				"k8s.yaml":                 "apiVersion: v1\nkind: ConfigMap\n",
				"web.dab":                  oneServiceDAB,
			},
			wantStacks: map[string]string{"web": "web.dab"},
			wantKeys:   []string{"swarm/service/web_web"},
		},
		{
			name: ".git is not walked",
			files: map[string]string{
				".git/stack.yaml": stackDoc("hidden", "  bundle: x.dab\n"),
				".git/x.dab":      oneServiceDAB,
				"web.dab":         oneServiceDAB,
			},
			wantStacks: map[string]string{"web": "web.dab"},
			wantKeys:   []string{"swarm/service/web_web"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := srcTree(t, tt.files)
			if strings.Contains(tt.name, "symlink") {
				symlink(t, filepath.Join(root, "real"), filepath.Join(root, "link"))
			}
			set := mustLoad(t, root, Options{})
			gotStacks := map[string]string{}
			for name, st := range set.Stacks {
				gotStacks[name] = st.Source
			}
			if diff := cmp.Diff(tt.wantStacks, gotStacks); diff != "" {
				t.Errorf("stacks (-want +got):\n%s", diff)
			}
			var keys []string
			for _, k := range set.Keys() {
				if k.Kind == resource.KindService {
					keys = append(keys, k.String())
				}
			}
			if diff := cmp.Diff(tt.wantKeys, keys); diff != "" {
				t.Errorf("service keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStackSettings(t *testing.T) {
	root := srcTree(t, map[string]string{
		"a.yaml":  stackDoc("a", "  bundle: app.dab\n  prune: false\n  selfHeal: false\n  resolveImage: never\n  dependsOn: [b]\n"),
		"b.yaml":  stackDoc("b", "  bundle: app.dab\n"),
		"app.dab": oneServiceDAB,
	})
	set := mustLoad(t, root, Options{})
	want := map[string]resource.Stack{
		"a": {Name: "a", Source: "a.yaml", Prune: false, SelfHeal: false, DependsOn: []string{"b"}, ResolveImage: "never"},
		"b": {Name: "b", Source: "b.yaml", Prune: true, SelfHeal: true, DependsOn: []string{}, ResolveImage: "changed"},
	}
	if diff := cmp.Diff(want, set.Stacks, cmp.Transformer("nilToEmpty", func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	})); diff != "" {
		t.Errorf("stacks (-want +got):\n%s", diff)
	}
}

func TestStamping(t *testing.T) {
	root := srcTree(t, map[string]string{
		"shop/stack.yaml": stackDoc("shop", "  compose: [docker-compose.yml]\n"),
		"shop/docker-compose.yml": `services:
  web:
    image: web:1
    labels: {container.label: x}
    deploy: {labels: {service.label: y}}
    secrets: [s]
    configs: [c]
    networks: [front, outside]
networks:
  front: {}
  outside: {external: true}
secrets:
  s: {file: ./s.txt}
configs:
  c: {file: ./c.txt}
`,
		"shop/s.txt": "secret",
		"shop/c.txt": "config",
	})
	for _, opts := range []Options{{}, {Instance: "blue", Revision: "main@sha1:" + strings.Repeat("a", 40)}} {
		set := mustLoad(t, root, opts)
		wantInstance := opts.Instance
		if wantInstance == "" {
			wantInstance = resource.DefaultInstance
		}
		var kinds []string
		for _, k := range set.Keys() {
			r := set.Resources[k]
			labels := r.Labels()
			if r.Stack != "shop" || r.Source == "" {
				t.Errorf("%s: Stack %q Source %q", k, r.Stack, r.Source)
			}
			if r.External {
				if _, ok := labels[resource.LabelManagedBy]; ok {
					t.Errorf("%s: external object stamped", k)
				}
				continue
			}
			kinds = append(kinds, k.Kind)
			if got := labels[resource.LabelManagedBy]; got != wantInstance {
				t.Errorf("%s: managed-by %q, want %q", k, got, wantInstance)
			}
			rev, hasRev := labels[resource.LabelRevision]
			if hasRev != (opts.Revision != "") || rev != opts.Revision {
				t.Errorf("%s: revision %q (present %v), want %q", k, rev, hasRev, opts.Revision)
			}
			if got, want := labels[resource.LabelSpecHash], resource.SpecHash(r); got != want || len(got) != 32 {
				t.Errorf("%s: spec-hash %q, want %q", k, got, want)
			}
			if r.Service != nil {
				for l := range r.Service.TaskTemplate.ContainerSpec.Labels {
					if strings.HasPrefix(l, "dev.capstan.") {
						t.Errorf("%s: container label %s stamped; that would restart tasks", k, l)
					}
				}
			}
		}
		if want := []string{"config", "network", "secret", "service"}; !cmp.Equal(uniq(kinds), want) {
			t.Errorf("stamped kinds %v, want %v", uniq(kinds), want)
		}
	}
}

func uniq(in []string) []string {
	var out []string
	for _, s := range in {
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// TestInterpolationSources: spec.variables override envFiles, later env files override
// earlier ones, and the process environment is never read.
func TestInterpolationSources(t *testing.T) {
	t.Setenv("FROM_PROCESS", "leaked")
	t.Setenv("TAG", "leaked")
	root := srcTree(t, map[string]string{
		"stack.yaml": stackDoc("app", "  compose: [docker-compose.yml]\n  envFiles: [base.env, prod.env]\n  variables: {TAG: \"3\"}\n"),
		"base.env":   "TAG=1\nLEVEL=debug\nREGION=cn-hangzhou\n",
		"prod.env":   "# prod overrides\nLEVEL=info\nZONE=${REGION}-a\n",
		"docker-compose.yml": `services:
  app:
    image: app:${TAG}
    environment:
      LEVEL: ${LEVEL}
      ZONE: ${ZONE}
      PROCESS: ${FROM_PROCESS:-unset}
`,
	})
	set := mustLoad(t, root, Options{})
	svc, ok := set.Get(resource.ServiceKey("app_app"))
	if !ok {
		t.Fatalf("no service app_app in %v", set.Keys())
	}
	cs := svc.Service.TaskTemplate.ContainerSpec
	if cs.Image != "app:3" {
		t.Errorf("image %q, want app:3 (spec.variables win)", cs.Image)
	}
	want := []string{"LEVEL=info", "PROCESS=unset", "ZONE=cn-hangzhou-a"}
	if diff := cmp.Diff(want, cs.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestWarningsKeepTheSet(t *testing.T) {
	root := srcTree(t, map[string]string{
		"stack.yaml": stackDoc("app", "  bundle: app.dab\n  variables: {A: b}\n"),
		"app.dab":    oneServiceDAB,
		"other.yaml": "apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata: {name: x}\nspec: {bundle: app.dab}\n---\napiVersion: v1\nkind: ConfigMap\n",
	})
	set, problems := Load(root, Options{})
	if set == nil || problems.HasErrors() {
		t.Fatalf("Load failed:\n%v", problems)
	}
	want := "other.yaml:6: warning: document with apiVersion \"v1\" is not a capstan manifest; skipped\n" +
		"stack.yaml:7: warning: spec.variables has no effect on a bundle: .dab files are not interpolated"
	if got := problems.Error(); got != want {
		t.Errorf("problems:\n%s\nwant:\n%s", got, want)
	}
}

func TestEmptyTree(t *testing.T) {
	root := srcTree(t, map[string]string{"README.md": "nothing here"})
	set, problems := Load(root, Options{})
	if set == nil || set.Len() != 0 || len(set.Stacks) != 0 {
		t.Fatalf("want an empty set, got %v", set)
	}
	if len(problems) != 1 || problems[0].Severity != Warning || !strings.Contains(problems[0].Message, "holds no Stack or Route documents") {
		t.Errorf("problems: %v", problems)
	}
	if _, problems := Load(filepath.Join(root, "missing"), Options{}); !problems.HasErrors() {
		t.Errorf("a missing root must be an error")
	}
}

func TestCrossStackObjects(t *testing.T) {
	compose := func(net string) string {
		return "services:\n  s: {image: s:1, networks: [n]}\nnetworks:\n  n: " + net + "\n"
	}
	t.Run("one stack owns, another uses it as external", func(t *testing.T) {
		root := srcTree(t, map[string]string{
			"stacks/owner/compose.yaml": compose("{name: shared, attachable: true}"),
			"stacks/user/compose.yaml":  compose("{name: shared, external: true}"),
		})
		set := mustLoad(t, root, Options{})
		r, ok := set.Get(resource.NetworkKey("shared"))
		if !ok || r.External || r.Stack != "owner" || r.Owner() != resource.DefaultInstance {
			t.Errorf("shared network = %+v, want the owner's managed network", r)
		}
	})
	t.Run("two stacks both manage it", func(t *testing.T) {
		root := srcTree(t, map[string]string{
			"stacks/one/compose.yaml": compose("{name: shared}"),
			"stacks/two/compose.yaml": compose("{name: shared}"),
		})
		set, problems := Load(root, Options{})
		if set != nil || !strings.Contains(problems.Error(), `swarm/network/shared is declared by stack "one" and again by stack "two"`) {
			t.Errorf("problems:\n%v", problems)
		}
	})
}

func TestRouteResource(t *testing.T) {
	root := srcTree(t, map[string]string{
		"web.dab": oneServiceDAB,
		"route.yaml": `apiVersion: capstan.dev/v1alpha1
kind: Route
metadata:
  name: web
spec:
  service: {stack: web, name: web, targetPort: 80}
  loadBalancer: {id: lb-1, region: cn-beijing}
  listener: {protocol: https, port: 443, certificateId: cert-1}
`,
	})
	set := mustLoad(t, root, Options{})
	key := resource.Key{Sink: "slb", Kind: "listener", Name: "lb-1:443/https"}
	r, ok := set.Get(key)
	if !ok {
		t.Fatalf("no %s in %v", key, set.Keys())
	}
	bw := -1
	want := resource.Resource{
		Key: key, Stack: "web", Source: "route.yaml:4",
		Route: &resource.Route{
			Name:         "web",
			Service:      resource.ServiceRef{Stack: "web", Name: "web", TargetPort: 80},
			LoadBalancer: resource.LoadBalancer{ID: "lb-1", Region: "cn-beijing"},
			Listener:     resource.Listener{Protocol: "https", Port: 443, Bandwidth: &bw, Scheduler: "wrr", CertificateID: "cert-1"},
			Backends:     resource.Backends{NodeRole: "any", Weight: 100},
		},
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("route resource (-want +got):\n%s", diff)
	}
}

func TestHostModeTargetWarns(t *testing.T) {
	root := srcTree(t, map[string]string{
		"stacks/web/compose.yaml": "services:\n  web:\n    image: web:1\n    ports: [{target: 80, published: 8080, mode: host}]\n",
		"route.yaml": `apiVersion: capstan.dev/v1alpha1
kind: Route
metadata: {name: web}
spec:
  service: {stack: web, name: web, targetPort: 80}
  loadBalancer: {id: lb-1, region: cn-beijing}
  listener: {protocol: tcp, port: 80}
`,
	})
	set, problems := Load(root, Options{})
	if set == nil {
		t.Fatalf("Load failed:\n%v", problems)
	}
	if got := problems.Error(); !strings.Contains(got, "route.yaml:5: warning: spec.service.targetPort: service web_web publishes port 80 in host mode") {
		t.Errorf("problems:\n%s", got)
	}
}

func TestDABConversion(t *testing.T) {
	// Keys in any case, as the original decoder accepted them.
	const dab = `{
  "version": "0.1",
  "services": {
    "api": {
      "image": "repo/api@sha256:0123456789012345678901234567890123456789012345678901234567890123",
      "command": ["/entry"],
      "args": ["--flag"],
      "env": ["K=V", "EMPTY="],
      "labels": {"tier": "back", "com.docker.stack.namespace": "overridden"},
      "ports": [{"protocol": "udp", "port": 53}, {"port": 8080}, {"protocol": "sctp", "port": 9}],
      "workingdir": "/app",
      "user": "1000:1000",
      "networks": ["front", "back"]
    }
  }
}`
	root := srcTree(t, map[string]string{"app.dab": dab})
	set := mustLoad(t, root, Options{})
	svc, _ := set.Get(resource.ServiceKey("app_api"))
	s := svc.Service
	image := "repo/api@sha256:0123456789012345678901234567890123456789012345678901234567890123"
	want := &swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "app_api", Labels: map[string]string{
			"tier": "back", resource.LabelNamespace: "app", resource.LabelImage: image,
			resource.LabelManagedBy: "capstan", resource.LabelSpecHash: s.Labels[resource.LabelSpecHash],
		}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: image, Labels: map[string]string{resource.LabelNamespace: "app"},
				Command: []string{"/entry"}, Args: []string{"--flag"}, Env: []string{"K=V", "EMPTY="},
				Dir: "/app", User: "1000:1000", Privileges: &swarm.Privileges{},
			},
			Resources: &swarm.ResourceRequirements{},
			Placement: &swarm.Placement{},
			Networks: []swarm.NetworkAttachmentConfig{
				{Target: "app_back", Aliases: []string{"api"}},
				{Target: "app_front", Aliases: []string{"api"}},
			},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{
			{Protocol: "udp", TargetPort: 53, PublishMode: "ingress"},
			{Protocol: "tcp", TargetPort: 8080, PublishMode: "ingress"},
			{Protocol: "sctp", TargetPort: 9, PublishMode: "ingress"},
		}},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("service spec (-want +got):\n%s", diff)
	}
	for _, n := range []string{"app_back", "app_front"} {
		r, ok := set.Get(resource.NetworkKey(n))
		if !ok || r.Network.Labels[resource.LabelNamespace] != "app" || r.Network.Driver != "" {
			t.Errorf("network %s = %+v", n, r.Network)
		}
	}
}

func TestDecodeDABProblems(t *testing.T) {
	tests := []struct {
		name, in string
		want     []dabProblem
	}{
		{"not an object", `["Version"]`, []dabProblem{{1, "document: want a JSON object, got an array"}}},
		{"trailing data", `{"Version": "0.1", "Services": {"a": {"Image": "x"}}} {}`, []dabProblem{{1, "unexpected data after the bundle's closing }"}}},
		{"truncated", "{\"Version\": \"0.1\",\n\"Services\": {", []dabProblem{{2, "invalid JSON: the bundle ends too early"}}},
		{"duplicate keys", "{\"Version\": \"0.1\",\n\"version\": \"0.1\", \"Services\": {\"a\": {\"Image\": \"x\", \"IMAGE\": \"y\"}}}",
			[]dabProblem{{2, "version: duplicate key (first on line 1)"}, {2, "Services.a.IMAGE: duplicate key (first on line 2)"}}},
		{"empty", `{"Version": "0.1", "Services": {}}`, []dabProblem{{1, "Services is missing or empty; a bundle needs at least one service"}}},
		{"bad names", `{"Version": "0.1", "Services": {"-a": {"Image": "x", "Networks": ["a b"], "Env": ["=x"]}}}`, []dabProblem{
			{1, `Services: "-a" is not a valid service name (letters, digits, '-' and '_', starting and ending with a letter or digit)`},
			{1, `Services.-a.Networks: "a b" is not a valid network name`},
			{1, `Services.-a.Env: "=x" has no variable name; want NAME=value`},
		}},
		{"duplicate port", `{"Version": "0.1", "Services": {"a": {"Image": "x", "Ports": [{"Port": 80}, {"Protocol": "tcp", "Port": 80}]}}}`,
			[]dabProblem{{1, "Services.a.Ports[1]: port 80/tcp is listed twice"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, got := decodeDAB([]byte(tt.in))
			if b != nil {
				t.Errorf("got a bundle")
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(dabProblem{})); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	in := "# leading comment\n%YAML 1.2\n---\na: 1\n---   # trailing\nb: 2\n---\n---\n--- {c: 3}\nd: |\n  ---not a marker\n"
	got := splitDocuments([]byte(in))
	want := []docChunk{
		{[]byte("# leading comment\n%YAML 1.2\n---\na: 1\n"), 1},
		{[]byte("---   # trailing\nb: 2\n"), 5},
		{[]byte("---\n"), 7},
		{[]byte("---\n"), 8},
		{[]byte("--- {c: 3}\nd: |\n  ---not a marker\n"), 9},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(docChunk{})); diff != "" {
		t.Errorf("chunks (-want +got):\n%s", diff)
	}
}
