package reconcile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/swarm"
)

// FreshFixture is one file of testdata/fresh, written by TestFreshApplyPlansNothing
// under -update from a real engine: the desired objects of a conformance case, the
// objects the swarm sink observed once capstan applied them, and the services as read
// with insertDefaults.
type FreshFixture struct {
	Instance  string
	Stacks    []resource.Stack
	Desired   []resource.Resource
	Live      []resource.Resource
	Inspected []InspectedService
}

// InspectedService is a service spec read with insertDefaults=true.
type InspectedService struct {
	Key  resource.Key
	Spec swarm.ServiceSpec
}

func loadFreshFixtures(t *testing.T) map[string]FreshFixture {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fresh", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 25 {
		t.Fatalf("testdata/fresh holds %d cases; regenerate them on an engine with go test -run TestFreshApplyPlansNothing -update", len(paths))
	}
	out := map[string]FreshFixture{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var fx FreshFixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = fx
	}
	return out
}

func (fx FreshFixture) sets() (desired, live *resource.Set) {
	desired, live = resource.NewSet(), resource.NewSet()
	for _, s := range fx.Stacks {
		desired.Stacks[s.Name] = s
	}
	for _, r := range fx.Desired {
		desired.Resources[r.Key] = r
	}
	for _, r := range fx.Live {
		live.Resources[r.Key] = r
	}
	return desired, live
}

// TestFreshFixturesPlanNothing replays the engine captures: every conformance case, as
// Engine 20.10 returned it after capstan applied it, plans no change and no drift, and
// its insertDefaults form compares equal to the source.
func TestFreshFixturesPlanNothing(t *testing.T) {
	for name, fx := range loadFreshFixtures(t) {
		t.Run(name, func(t *testing.T) {
			desired, live := fx.sets()
			p, err := BuildPlan(desired, live, Options{Instance: fx.Instance})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Changes) > 0 || len(p.Drift) > 0 {
				var b strings.Builder
				_ = RenderText(&b, p)
				t.Errorf("false drift:\n%s", b.String())
			}
			for _, in := range fx.Inspected {
				if d := DiffService(*desired.Resources[in.Key].Service, in.Spec); len(d) > 0 {
					t.Errorf("%s with insertDefaults differs: %+v", in.Key, d)
				}
			}
		})
	}
}
