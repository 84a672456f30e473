package manifests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/capstan-dev/capstan/resource"
)

// goldenResource is how a loaded resource is written to a golden file: the key as a
// string and only the spec that is set.
type goldenResource struct {
	Key      string                 `json:"key"`
	Stack    string                 `json:"stack"`
	Source   string                 `json:"source"`
	External bool                   `json:"external,omitempty"`
	Service  *swarm.ServiceSpec     `json:"service,omitempty"`
	Network  *network.CreateOptions `json:"network,omitempty"`
	Secret   *swarm.SecretSpec      `json:"secret,omitempty"`
	Config   *swarm.ConfigSpec      `json:"config,omitempty"`
	Route    *resource.Route        `json:"route,omitempty"`
}

type goldenSet struct {
	Stacks    map[string]resource.Stack `json:"stacks"`
	Resources []goldenResource          `json:"resources"`
}

func renderSet(t *testing.T, set *resource.Set) []byte {
	t.Helper()
	g := goldenSet{Stacks: set.Stacks}
	for _, k := range set.Keys() {
		r := set.Resources[k]
		g.Resources = append(g.Resources, goldenResource{
			Key: k.String(), Stack: r.Stack, Source: r.Source, External: r.External,
			Service: r.Service, Network: r.Network, Secret: r.Secret, Config: r.Config, Route: r.Route,
		})
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./manifests/ -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); rerun with -update if the change is intended:\n%s", path, diff)
	}
}

const testRevision = "main@sha1:0123456789abcdef0123456789abcdef01234567"

// TestExamples loads each example and the whole examples/ tree, and compares the
// desired state with golden files: the specs capstan would send to Swarm and SLB.
func TestExamples(t *testing.T) {
	for _, tc := range []struct{ name, dir string }{
		{"wordpress", "wordpress"},
		{"shop", "shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, problems := Load(filepath.Join("..", "examples", tc.dir), Options{Revision: testRevision})
			if len(problems) > 0 {
				t.Fatalf("problems:\n%v", problems)
			}
			checkGolden(t, tc.name+".json", renderSet(t, set))
		})
	}
	t.Run("all", func(t *testing.T) {
		set, problems := Load(filepath.Join("..", "examples"), Options{})
		if len(problems) > 0 {
			t.Fatalf("problems:\n%v", problems)
		}
		if got, want := set.StackNames(), []string{"shop", "shop-db", "wordpress"}; !cmp.Equal(got, want) {
			t.Errorf("stacks = %v, want %v (wordpress.dab must not be a stack of its own)", got, want)
		}
	})
}

// TestWordpressBundle loads examples/wordpress/wordpress.dab on its own, as the bare
// NAME.dab a `docker deploy` user had, and checks it against its golden file and
// against the compose stack: both must describe the same application.
func TestWordpressBundle(t *testing.T) {
	root := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "examples", "wordpress", "wordpress.dab"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "wordpress.dab"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	set, problems := Load(root, Options{Revision: testRevision})
	if len(problems) > 0 {
		t.Fatalf("problems:\n%v", problems)
	}
	checkGolden(t, "wordpress-dab.json", renderSet(t, set))

	st := set.Stacks["wordpress"]
	if want := (resource.Stack{Name: "wordpress", Source: "wordpress.dab", Prune: true, SelfHeal: true, ResolveImage: resource.ResolveChanged}); !cmp.Equal(st, want) {
		t.Errorf("implied stack settings:\n%s", cmp.Diff(want, st))
	}

	compose, problems := Load(filepath.Join("..", "examples", "wordpress"), Options{Revision: testRevision})
	if problems.HasErrors() {
		t.Fatalf("problems:\n%v", problems)
	}
	for _, name := range []string{"wordpress_wordpress", "wordpress_mysql"} {
		d, ok := set.Get(resource.ServiceKey(name))
		c, ok2 := compose.Get(resource.ServiceKey(name))
		if !ok || !ok2 {
			t.Fatalf("%s missing: bundle %v, compose %v", name, ok, ok2)
		}
		// The bundle has no restart policy (Swarm's default, any, applies); the
		// compose file says restart: always. Everything else matches.
		dc, cc := *d.Service, *c.Service
		dc.TaskTemplate.RestartPolicy, cc.TaskTemplate.RestartPolicy = nil, nil
		dc.Labels, cc.Labels = withoutHash(dc.Labels), withoutHash(cc.Labels)
		if d.Service.Labels[resource.LabelSpecHash] == c.Service.Labels[resource.LabelSpecHash] {
			t.Errorf("%s: bundle and compose specs hash the same despite the restart policy", name)
		}
		// compose conversion leaves empty slices where docker/cli convert does; they
		// encode (and hash) the same as nil.
		if diff := cmp.Diff(cc, dc, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: bundle and compose specs differ beyond the restart policy (-compose +bundle):\n%s", name, diff)
		}
	}
}

func withoutHash(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if k != resource.LabelSpecHash {
			out[k] = v
		}
	}
	return out
}
