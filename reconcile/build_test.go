package reconcile

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"
)

func plan(t *testing.T, desired, live *resource.Set, opts Options) Plan {
	t.Helper()
	if opts.Revision == "" {
		opts.Revision = testRevision
	}
	p, err := BuildPlan(desired, live, opts)
	if err != nil {
		t.Fatalf("BuildPlan: %v", err)
	}
	return p
}

// assertStable applies p to live (faithfully, see applyPlan) and checks the next plan is
// empty: what capstan applied must never show up as a change or drift again.
func assertStable(t *testing.T, desired, live *resource.Set, p Plan) {
	t.Helper()
	after := applyPlan(t, live, p)
	again := plan(t, desired, after, Options{})
	if again.HasChanges() || len(again.Drift) > 0 || len(again.Changes) > 0 {
		t.Fatalf("plan after applying is not empty:\n%s\ndrift: %v", strings.Join(summarize(again), "\n"), again.Drift)
	}
}

func TestBuildPlanCreatesInDependencyOrder(t *testing.T) {
	desired := newSet([]resource.Stack{stackDoc("wp")},
		service("wp", "web", usesSecret("wp_db_password", "db_password"), usesConfig("wp_php_ini", "php.ini")),
		service("wp", "db", usesSecret("wp_db_password", "db_password")),
		overlay("wp", "default"),
		secret("wp", "db_password", "hunter2"),
		config("wp", "php_ini", "memory_limit=64M"),
	)
	p := plan(t, desired, resource.NewSet(), Options{})
	want := []string{
		"+ swarm/network/wp_default (NotInCluster)",
		"+ swarm/secret/wp_db_password (NotInCluster)",
		"+ swarm/config/wp_php_ini (NotInCluster)",
		"+ swarm/service/wp_db (NotInCluster)",
		"+ swarm/service/wp_web (NotInCluster)",
	}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if got := p.Summary(); got != (Summary{Add: 5}) {
		t.Errorf("summary = %+v, want 5 to add", got)
	}
	// A Create lists the new object's fields, secret data masked.
	sec := findChange(t, p, "swarm/secret/wp_db_password")
	for _, d := range sec.Diff {
		if strings.Contains(d.After, "hunter2") {
			t.Errorf("secret data shown in diff: %+v", d)
		}
		if d.Path == "Data" && d.After != Masked {
			t.Errorf("secret Data shown as %q, want %q", d.After, Masked)
		}
	}
	web := findChange(t, p, "swarm/service/wp_web")
	if !containsPath(web.Diff, "TaskTemplate.ContainerSpec.Image") {
		t.Errorf("create of service does not list its image: %v", diffPaths(web.Diff))
	}
	assertStable(t, desired, resource.NewSet(), p)
}

func containsPath(diffs []FieldDiff, path string) bool {
	for _, d := range diffs {
		if d.Path == path {
			return true
		}
	}
	return false
}

func TestBuildPlanFreshlyAppliedIsEmpty(t *testing.T) {
	desired := newSet([]resource.Stack{stackDoc("wp")},
		overlay("wp", "default"),
		service("wp", "web", env("A=1"), replicas(3), func(s *swarm.ServiceSpec) {
			s.EndpointSpec.Ports = []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}, {TargetPort: 53, Protocol: "udp"}}
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
			s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2}
		}),
		secret("wp", "pw", "x"),
		config("wp", "conf", "y"),
	)
	live := liveOf(desired)
	p := plan(t, desired, live, Options{})
	if len(p.Changes) != 0 || len(p.Drift) != 0 || p.HasChanges() {
		t.Fatalf("plan of a freshly applied stack is not empty:\n%s", strings.Join(summarize(p), "\n"))
	}

	// A new revision that changes no spec changes nothing either.
	p = plan(t, withRevision(desired, testRevision2), live, Options{Revision: testRevision2})
	if len(p.Changes) != 0 {
		t.Fatalf("a revision-only change planned changes:\n%s", strings.Join(summarize(p), "\n"))
	}
}

// withRevision restamps every desired object with another revision label, as loading a
// later commit that changed nothing would.
func withRevision(s *resource.Set, rev string) *resource.Set {
	out := newSet(nil)
	for name, st := range s.Stacks {
		out.Stacks[name] = st
	}
	for k, r := range s.Resources {
		c := *copyResource(r)
		c.Labels()[resource.LabelRevision] = rev
		out.Resources[k] = c
	}
	return out
}

func TestBuildPlanSourceChanges(t *testing.T) {
	base := func(mut ...func(*swarm.ServiceSpec)) *resource.Set {
		return newSet([]resource.Stack{stackDoc("wp")}, overlay("wp", "default"), service("wp", "web", mut...))
	}
	live := liveOf(base(env("A=1", "DB_PASSWORD=old"), replicas(2)))

	tests := []struct {
		name      string
		desired   *resource.Set
		want      []string
		wantPaths []string
	}{
		{
			name:      "env change is an update",
			desired:   base(env("A=2", "DB_PASSWORD=old"), replicas(2)),
			want:      []string{"~ swarm/service/wp_web (SourceChanged)"},
			wantPaths: []string{"TaskTemplate.ContainerSpec.Env[A]"},
		},
		{
			name:      "replicas alone is a scale",
			desired:   base(env("A=1", "DB_PASSWORD=old"), replicas(6)),
			want:      []string{"^ swarm/service/wp_web (ReplicasChanged)"},
			wantPaths: []string{"Mode.Replicated.Replicas"},
		},
		{
			name:      "replicas and image is an update",
			desired:   base(env("A=1", "DB_PASSWORD=old"), replicas(6), func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "nginx:1.27" }),
			want:      []string{"~ swarm/service/wp_web (SourceChanged)"},
			wantPaths: []string{"Mode.Replicated.Replicas", "TaskTemplate.ContainerSpec.Image"},
		},
		{
			name:      "replicated to global is a replace",
			desired:   base(env("A=1", "DB_PASSWORD=old"), global()),
			want:      []string{"± swarm/service/wp_web (ImmutableField)"},
			wantPaths: []string{"Mode"},
		},
		{
			name:      "a change normalization erases still rewrites the hash label",
			desired:   base(env("A=1", "DB_PASSWORD=old"), replicas(2), func(s *swarm.ServiceSpec) { s.EndpointSpec.Mode = swarm.ResolutionModeVIP }),
			want:      []string{"~ swarm/service/wp_web (SourceChanged)"},
			wantPaths: []string{"Labels[dev.capstan.spec-hash]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(t, tt.desired, live, Options{})
			if diff := cmp.Diff(tt.want, summarize(p)); diff != "" {
				t.Fatalf("changes (-want +got):\n%s", diff)
			}
			c := p.Changes[0]
			if diff := cmp.Diff(tt.wantPaths, diffPaths(c.Diff)); diff != "" {
				t.Errorf("diff paths (-want +got):\n%s", diff)
			}
			if len(p.Drift) != 0 {
				t.Errorf("source change reported as drift: %v", p.Drift)
			}
			if c.Before == nil || c.After == nil || c.Before.ID == "" {
				t.Errorf("change lacks Before (with live ID) or After: %+v", c)
			}
			assertStable(t, tt.desired, live, p)
		})
	}
}

func TestBuildPlanCarriesOverLiveState(t *testing.T) {
	desired := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "web", replicas(2), func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "nginx"
		s.Labels[resource.LabelImage] = "nginx"
	}))
	lv := stored(desired.Resources[resource.ServiceKey("wp_web")])
	// Pinned by the client at create time, forced once by hand.
	lv.Service.TaskTemplate.ContainerSpec.Image = "nginx:latest@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
	lv.Service.TaskTemplate.Placement.Platforms = []swarm.Platform{{OS: "linux", Architecture: "amd64"}}
	lv.Service.TaskTemplate.ForceUpdate = 3
	live := newSet(nil, lv)

	if p := plan(t, desired, live, Options{}); len(p.Changes) != 0 {
		t.Fatalf("digest pin, platforms or ForceUpdate caused changes:\n%s", strings.Join(summarize(p), "\n"))
	}

	scaled := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "web", replicas(5), func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "nginx"
		s.Labels[resource.LabelImage] = "nginx"
	}))
	p := plan(t, scaled, live, Options{})
	c := findChange(t, p, "swarm/service/wp_web")
	if c.Action != Scale {
		t.Fatalf("action = %v, want scale", c.Action)
	}
	got := c.After.Service.TaskTemplate
	if got.ForceUpdate != 3 {
		t.Errorf("After.ForceUpdate = %d, want the live 3", got.ForceUpdate)
	}
	if got.ContainerSpec.Image != lv.Service.TaskTemplate.ContainerSpec.Image {
		t.Errorf("After image = %q, want the live pinned image", got.ContainerSpec.Image)
	}
	if len(got.Placement.Platforms) != 1 {
		t.Errorf("After platforms = %v, want the live ones", got.Placement.Platforms)
	}
	// The desired set is never modified.
	if img := scaled.Resources[resource.ServiceKey("wp_web")].Service.TaskTemplate.ContainerSpec.Image; img != "nginx" {
		t.Errorf("desired image modified to %q", img)
	}

	// With resolveImage always, the pin is not kept: the update resolves the tag again.
	always := newSet([]resource.Stack{stackDoc("wp", func(s *resource.Stack) { s.ResolveImage = resource.ResolveAlways })}, scaled.Resources[resource.ServiceKey("wp_web")])
	p = plan(t, always, live, Options{})
	if img := findChange(t, p, "swarm/service/wp_web").After.Service.TaskTemplate.ContainerSpec.Image; img != "nginx" {
		t.Errorf("resolveImage always: After image = %q, want the unpinned source image", img)
	}

	// A changed image is not replaced by the live pin.
	newImage := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "web", replicas(2)))
	p = plan(t, newImage, live, Options{})
	if img := findChange(t, p, "swarm/service/wp_web").After.Service.TaskTemplate.ContainerSpec.Image; img != "nginx:1.25" {
		t.Errorf("changed image: After image = %q, want nginx:1.25", img)
	}
}

// TestBuildPlanQueryRegistry: which service writes ask the registry for a digest, per
// resolveImage, as docker stack deploy --resolve-image does.
func TestBuildPlanQueryRegistry(t *testing.T) {
	pinned := "nginx:1.25@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
	base := service("wp", "web", replicas(2))
	lv := stored(base)
	lv.Service.TaskTemplate.ContainerSpec.Image = pinned
	live := newSet(nil, lv)
	envChanged := service("wp", "web", replicas(2), func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Env = []string{"A=1"} })
	imageChanged := service("wp", "web", replicas(2), func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "nginx:1.27"
		s.Labels[resource.LabelImage] = "nginx:1.27"
	})
	scaled := service("wp", "web", replicas(3))
	for _, tc := range []struct {
		name    string
		policy  string
		desired resource.Resource
		live    *resource.Set
		action  Action
		want    bool
	}{
		{"changed: create", resource.ResolveChanged, base, resource.NewSet(), Create, true},
		{"changed: image changed", resource.ResolveChanged, imageChanged, live, Update, true},
		{"changed: same image, other change", resource.ResolveChanged, envChanged, live, Update, false},
		{"changed: scale", resource.ResolveChanged, scaled, live, Scale, false},
		{"always: create", resource.ResolveAlways, base, resource.NewSet(), Create, true},
		{"always: same image, other change", resource.ResolveAlways, envChanged, live, Update, true},
		{"always: scale", resource.ResolveAlways, scaled, live, Scale, false},
		{"never: create", resource.ResolveNever, base, resource.NewSet(), Create, false},
		{"never: image changed", resource.ResolveNever, imageChanged, live, Update, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desired := newSet([]resource.Stack{stackDoc("wp", func(s *resource.Stack) { s.ResolveImage = tc.policy })}, tc.desired)
			c := findChange(t, plan(t, desired, tc.live, Options{}), "swarm/service/wp_web")
			if c.Action != tc.action || c.QueryRegistry != tc.want {
				t.Errorf("%v with QueryRegistry %v, want %v with %v", c.Action, c.QueryRegistry, tc.action, tc.want)
			}
			if tc.name == "changed: same image, other change" && c.After.Service.TaskTemplate.ContainerSpec.Image != pinned {
				t.Errorf("an update that keeps the image sends %q, want the live pin", c.After.Service.TaskTemplate.ContainerSpec.Image)
			}
		})
	}
}

func TestBuildPlanDrift(t *testing.T) {
	for _, selfHeal := range []bool{true, false} {
		desired := newSet([]resource.Stack{stackDoc("wp", func(s *resource.Stack) { s.SelfHeal = selfHeal })},
			service("wp", "web", env("A=1"), replicas(2)), service("wp", "db"))
		live := liveOf(desired)
		// Edited by hand: docker service update --env-add A=9; docker service scale wp_db=4.
		web := live.Resources[resource.ServiceKey("wp_web")]
		web.Service.TaskTemplate.ContainerSpec.Env = []string{"A=9"}
		db := live.Resources[resource.ServiceKey("wp_db")]
		db.Service.Mode.Replicated.Replicas = u64(4)

		p := plan(t, desired, live, Options{})
		wantDrift := []resource.Key{resource.ServiceKey("wp_db"), resource.ServiceKey("wp_web")}
		if diff := cmp.Diff(wantDrift, p.Drift); diff != "" {
			t.Errorf("selfHeal=%v: drift (-want +got):\n%s", selfHeal, diff)
		}
		want := []string{"^ swarm/service/wp_db (Drift)", "~ swarm/service/wp_web (Drift)"}
		if !selfHeal {
			want = []string{". swarm/service/wp_db (Drift)", ". swarm/service/wp_web (Drift)"}
		}
		if diff := cmp.Diff(want, summarize(p)); diff != "" {
			t.Errorf("selfHeal=%v: changes (-want +got):\n%s", selfHeal, diff)
		}
		if p.HasChanges() == !selfHeal {
			t.Errorf("selfHeal=%v: HasChanges = %v", selfHeal, p.HasChanges())
		}
		c := findChange(t, p, "swarm/service/wp_web")
		if diff := cmp.Diff([]FieldDiff{{Path: "TaskTemplate.ContainerSpec.Env[A]", Before: "9", After: "1"}}, c.Diff); diff != "" {
			t.Errorf("selfHeal=%v: drift diff (-want +got):\n%s", selfHeal, diff)
		}
		if selfHeal {
			assertStable(t, desired, live, p)
		}
	}
}

func TestBuildPlanOwnership(t *testing.T) {
	desired := newSet([]resource.Stack{stackDoc("wp")}, overlay("wp", "default"), service("wp", "web"), service("wp", "db"))
	live := liveOf(desired)
	// wp_web was deployed by docker stack deploy; wp_db belongs to another capstan.
	web := live.Resources[resource.ServiceKey("wp_web")]
	delete(web.Service.Labels, resource.LabelManagedBy)
	delete(web.Service.Labels, resource.LabelSpecHash)
	db := live.Resources[resource.ServiceKey("wp_db")]
	db.Service.Labels[resource.LabelManagedBy] = "staging"
	// Unowned objects that are not desired are never touched.
	stranger := stored(service("other", "app"))
	delete(stranger.Service.Labels, resource.LabelManagedBy)
	live.Resources[stranger.Key] = stranger

	_, err := BuildPlan(desired, live, Options{})
	var conflict *ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("err = %v, want a *ConflictError", err)
	}
	want := []Conflict{
		{Key: resource.ServiceKey("wp_db"), Owner: "staging", Source: "stacks/wp/compose.yml"},
		{Key: resource.ServiceKey("wp_web"), Source: "stacks/wp/compose.yml"},
	}
	if diff := cmp.Diff(want, conflict.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	for _, s := range []string{"swarm/service/wp_web", "swarm/service/wp_db", `"staging"`, "--adopt"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error message lacks %q:\n%v", s, err)
		}
	}

	p := plan(t, desired, live, Options{Adopt: true})
	wantChanges := []string{"~ swarm/service/wp_db (SourceChanged)", "~ swarm/service/wp_web (SourceChanged)"}
	if diff := cmp.Diff(wantChanges, summarize(p)); diff != "" {
		t.Errorf("adopt (-want +got):\n%s", diff)
	}
	if c := findChange(t, p, "swarm/service/wp_db"); c.After.Service.Labels[resource.LabelManagedBy] != testInstance {
		t.Errorf("adopted After is not labelled managed-by %s", testInstance)
	}
	assertStable(t, desired, live, p)
}

func TestBuildPlanPrune(t *testing.T) {
	gone := service("old", "app")
	keptNet := overlay("wp", "legacy")
	tests := []struct {
		name     string
		stacks   []resource.Stack
		want     []string
		warnings int
	}{
		{"stack prunes", []resource.Stack{stackDoc("wp"), stackDoc("old")}, []string{"- swarm/service/old_app (NotInSource)", "- swarm/network/wp_legacy (NotInSource)"}, 0},
		{"stack left the source", []resource.Stack{stackDoc("wp")}, []string{"- swarm/service/old_app (NotInSource)", "- swarm/network/wp_legacy (NotInSource)"}, 0},
		{"prune off", []resource.Stack{stackDoc("wp", func(s *resource.Stack) { s.Prune = false }), stackDoc("old", func(s *resource.Stack) { s.Prune = false })}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desired := newSet(tt.stacks, service("wp", "web"), service("wp", "db"), service("wp", "cache"))
			live := liveOf(desired)
			live.Resources[gone.Key] = stored(gone)
			live.Resources[keptNet.Key] = stored(keptNet)
			p := plan(t, desired, live, Options{})
			if diff := cmp.Diff(tt.want, summarize(p)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if len(p.Warnings) != tt.warnings {
				t.Errorf("warnings = %q, want %d", p.Warnings, tt.warnings)
			}
		})
	}
}

func TestBuildPlanMassDeleteGuard(t *testing.T) {
	three := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "a"), service("wp", "b"), service("wp", "c"))
	live := liveOf(three)
	tests := []struct {
		name    string
		desired *resource.Set
		refused bool
	}{
		{"one of three", newSet([]resource.Stack{stackDoc("wp")}, service("wp", "a"), service("wp", "b")), false},
		{"two of three", newSet([]resource.Stack{stackDoc("wp")}, service("wp", "a")), true},
		{"all (empty checkout)", resource.NewSet(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := BuildPlan(tt.desired, live, Options{})
			var guard *MassDeleteError
			if got := errors.As(err, &guard); got != tt.refused {
				t.Fatalf("refused = %v (err %v), want %v", got, err, tt.refused)
			}
			if tt.refused {
				if guard.Owned != 3 || !strings.Contains(err.Error(), "--allow-mass-delete") {
					t.Errorf("guard error = %+v: %v", guard, err)
				}
				if len(p.Changes) == 0 {
					t.Errorf("the refused plan is not returned for display")
				}
				if _, err := BuildPlan(tt.desired, live, Options{AllowMassDelete: true}); err != nil {
					t.Errorf("AllowMassDelete: %v", err)
				}
			}
		})
	}
	// A single owned service: deleting it is deleting all of them.
	one := liveOf(newSet(nil, service("wp", "a")))
	if _, err := BuildPlan(resource.NewSet(), one, Options{}); !errors.As(err, new(*MassDeleteError)) {
		t.Errorf("deleting the only owned service: err = %v, want *MassDeleteError", err)
	}
}

func TestBuildPlanExternal(t *testing.T) {
	ext := resource.Resource{Key: resource.NetworkKey("traefik-public"), External: true, Source: "stacks/wp/compose.yml:12"}
	extSecret := resource.Resource{Key: resource.SecretKey("tls_cert"), External: true, Source: "stacks/wp/compose.yml:30"}
	desired := newSet([]resource.Stack{stackDoc("wp")}, ext, extSecret, service("wp", "web", onNetwork("traefik-public"), usesSecret("tls_cert", "cert")))

	_, err := BuildPlan(desired, resource.NewSet(), Options{})
	var missing *MissingExternalError
	if !errors.As(err, &missing) {
		t.Fatalf("err = %v, want *MissingExternalError", err)
	}
	if len(missing.Missing) != 2 || !strings.Contains(err.Error(), "stacks/wp/compose.yml:12: network \"traefik-public\"") {
		t.Errorf("error does not name both objects with their files:\n%v", err)
	}

	// Present: never changed, whatever its labels, and never versioned.
	live := newSet(nil,
		resource.Resource{Key: ext.Key, ID: "n1", Network: &network.CreateOptions{Driver: "overlay", Labels: map[string]string{"x": "y"}}},
		resource.Resource{Key: extSecret.Key, ID: "s1", Secret: &swarm.SecretSpec{Annotations: swarm.Annotations{Name: "tls_cert"}}})
	p := plan(t, desired, live, Options{})
	if diff := cmp.Diff([]string{"+ swarm/service/wp_web (NotInCluster)"}, summarize(p)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	refs := findChange(t, p, "swarm/service/wp_web").After.Service.TaskTemplate.ContainerSpec.Secrets
	if refs[0].SecretName != "tls_cert" {
		t.Errorf("external secret reference rewritten to %q", refs[0].SecretName)
	}
}

func TestBuildPlanDoesNotModifyInputs(t *testing.T) {
	desired := newSet([]resource.Stack{stackDoc("wp")}, overlay("wp", "default"), service("wp", "web", usesSecret("wp_pw", "pw"), env("B=2", "A=1")), secret("wp", "pw", "v2"))
	live := liveOf(newSet(nil, overlay("wp", "default"), service("wp", "web", usesSecret("wp_pw", "pw"), env("A=1")), secret("wp", "pw", "v1")))
	live.Resources[resource.ServiceKey("wp_web")].Service.TaskTemplate.ForceUpdate = 1
	dCopy, lCopy := cloneSet(desired), cloneSet(live)
	plan(t, desired, live, Options{})
	if !reflect.DeepEqual(desired, dCopy) {
		t.Errorf("BuildPlan modified the desired set")
	}
	if !reflect.DeepEqual(live, lCopy) {
		t.Errorf("BuildPlan modified the live set")
	}
}

func cloneSet(s *resource.Set) *resource.Set {
	out := newSet(nil)
	for n, st := range s.Stacks {
		out.Stacks[n] = st
	}
	for k, r := range s.Resources {
		out.Resources[k] = *copyResource(r)
	}
	return out
}

func TestBuildPlanRotatesSecretsAndConfigs(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp")}
	v1 := newSet(stacks,
		secret("wp", "db_password", "v1"), config("wp", "nginx_conf", "a"),
		service("wp", "web", usesSecret("wp_db_password", "db_password"), usesConfig("wp_nginx_conf", "nginx.conf")),
		service("wp", "db", usesSecret("wp_db_password", "db_password")),
		service("wp", "cache"))
	live := liveOf(v1)

	v2 := newSet(stacks,
		secret("wp", "db_password", "v2"), config("wp", "nginx_conf", "b"),
		v1.Resources[resource.ServiceKey("wp_web")], v1.Resources[resource.ServiceKey("wp_db")], v1.Resources[resource.ServiceKey("wp_cache")])
	p := plan(t, v2, live, Options{})
	sec := versionName("wp_db_password", specHash(v2.Resources[resource.SecretKey("wp_db_password")]))
	conf := versionName("wp_nginx_conf", specHash(v2.Resources[resource.ConfigKey("wp_nginx_conf")]))
	want := []string{
		"+ swarm/secret/" + sec + " (Rotated)",
		"+ swarm/config/" + conf + " (Rotated)",
		"~ swarm/service/wp_db (Rotated)",
		"~ swarm/service/wp_web (Rotated)",
		"- swarm/config/wp_nginx_conf (Rotated)",
		"- swarm/secret/wp_db_password (Rotated)",
	}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Fatalf("rotation (-want +got):\n%s", diff)
	}
	if len(sec) != len("wp_db_password")+9 {
		t.Errorf("version name %q is not <name>_<hash8>", sec)
	}
	created := findChange(t, p, "swarm/secret/"+sec)
	if created.After.Secret.Name != sec || string(created.After.Secret.Data) != "v2" {
		t.Errorf("new version spec = %q with data %q", created.After.Secret.Name, created.After.Secret.Data)
	}
	web := findChange(t, p, "swarm/service/wp_web")
	wantDiff := []FieldDiff{
		{Path: "TaskTemplate.ContainerSpec.Configs[nginx.conf].ConfigName", Before: "wp_nginx_conf", After: conf},
		{Path: "TaskTemplate.ContainerSpec.Secrets[db_password].SecretName", Before: "wp_db_password", After: sec},
	}
	if diff := cmp.Diff(wantDiff, web.Diff); diff != "" {
		t.Errorf("service diff (-want +got):\n%s", diff)
	}
	if ref := web.After.Service.TaskTemplate.ContainerSpec.Secrets[0]; ref.SecretName != sec || ref.SecretID != "" {
		t.Errorf("After secret ref = %+v, want name %s without ID", ref, sec)
	}
	if len(p.Drift) != 0 {
		t.Errorf("rotation reported as drift: %v", p.Drift)
	}

	// Once applied, the plan is empty: services use the version whose hash matches.
	after := applyPlan(t, live, p)
	if again := plan(t, v2, after, Options{}); len(again.Changes) != 0 {
		t.Fatalf("plan after rotation is not empty:\n%s", strings.Join(summarize(again), "\n"))
	}

	// Rotating again (v3) supersedes the versioned name; going back to v1 content
	// reuses nothing stale and still converges.
	for _, data := range []string{"v3", "v1"} {
		next := newSet(stacks, secret("wp", "db_password", data), v2.Resources[resource.ConfigKey("wp_nginx_conf")],
			v1.Resources[resource.ServiceKey("wp_web")], v1.Resources[resource.ServiceKey("wp_db")], v1.Resources[resource.ServiceKey("wp_cache")])
		p := plan(t, next, after, Options{})
		deletes := 0
		for _, c := range p.Changes {
			if c.Action == Delete {
				deletes++
				if c.Key.Kind != resource.KindSecret {
					t.Errorf("%s: unexpected delete %s", data, c.Key)
				}
			}
		}
		if deletes != 1 {
			t.Errorf("%s: %d deletes, want the one superseded secret:\n%s", data, deletes, strings.Join(summarize(p), "\n"))
		}
		after = applyPlan(t, after, p)
		if again := plan(t, next, after, Options{}); len(again.Changes) != 0 {
			t.Fatalf("%s: plan after rotation is not empty:\n%s", data, strings.Join(summarize(again), "\n"))
		}
		if n := countKind(after, resource.KindSecret); n != 1 {
			t.Errorf("%s: %d secrets live after rotation, want 1", data, n)
		}
	}
}

func countKind(s *resource.Set, kind string) int {
	n := 0
	for k := range s.Resources {
		if k.Kind == kind {
			n++
		}
	}
	return n
}

func TestBuildPlanKeepsSupersededVersionInUse(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp"), stackDoc("other")}
	v1 := newSet(stacks, secret("wp", "pw", "v1"), service("wp", "web", usesSecret("wp_pw", "pw")))
	live := liveOf(v1)
	// A service capstan does not manage uses the secret too.
	foreign := stored(service("other", "tool", usesSecret("wp_pw", "pw")))
	delete(foreign.Service.Labels, resource.LabelManagedBy)
	live.Resources[foreign.Key] = foreign

	v2 := newSet(stacks, secret("wp", "pw", "v2"), v1.Resources[resource.ServiceKey("wp_web")])
	p := plan(t, v2, live, Options{})
	for _, c := range p.Changes {
		if c.Action == Delete {
			t.Errorf("deletes %s although other_tool still uses it", c.Key)
		}
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "other_tool") {
		t.Errorf("warnings = %q, want one naming other_tool", p.Warnings)
	}
}

func TestBuildPlanConfigLabelsOnly(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp")}
	v1 := config("wp", "conf", "same")
	live := liveOf(newSet(stacks, v1))
	v2 := config("wp", "conf", "same")
	v2.Config.Labels["team"] = "web"
	v2 = stamp(v2, testRevision)
	p := plan(t, newSet(stacks, v2), live, Options{})
	want := []string{"~ swarm/config/wp_conf (SourceChanged)"}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Errorf("label-only config change (-want +got):\n%s", diff)
	}
}

func TestBuildPlanSecretVersionNameLimit(t *testing.T) {
	long := strings.Repeat("s", 70)
	for _, name := range []string{"pw", strings.Repeat("n", 55), strings.Repeat("n", 56), long} {
		v := versionName(name, "0123456789abcdef")
		if len(v) > maxObjectName || !strings.HasSuffix(v, "_01234567") {
			t.Errorf("versionName(%d chars) = %q (%d chars)", len(name), v, len(v))
		}
		if !isVersion(v, name) || isVersion(name+"_0123456z", name) {
			t.Errorf("isVersion disagrees with versionName for %q", name)
		}
		if len(name) < maxObjectName-9 && isVersion(name+"_01234567", name+"x") {
			t.Errorf("isVersion confuses %q with %q", name, name+"x")
		}
	}
}

func TestBuildPlanNetworkReplace(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp")}
	v1 := newSet(stacks, overlay("wp", "default"), overlay("wp", "back"),
		service("wp", "web"), service("wp", "db", onNetwork("wp_back")), service("wp", "api", onNetwork("wp_back"), env("A=1")))
	live := liveOf(v1)
	v2 := newSet(stacks, overlay("wp", "default"), overlay("wp", "back", func(n *network.CreateOptions) { n.Internal = true }),
		v1.Resources[resource.ServiceKey("wp_web")], v1.Resources[resource.ServiceKey("wp_db")], service("wp", "api", onNetwork("wp_back"), env("A=2")))
	p := plan(t, v2, live, Options{})
	want := []string{
		"± swarm/network/wp_back (ImmutableField)",
		"~ swarm/service/wp_api (SourceChanged)",
		"~ swarm/service/wp_db (ImmutableField)",
	}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Fatalf("network replace (-want +got):\n%s", diff)
	}
	net := p.Changes[0]
	if diff := cmp.Diff([]resource.Key{resource.ServiceKey("wp_api"), resource.ServiceKey("wp_db")}, net.Detach); diff != "" {
		t.Errorf("Detach (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]FieldDiff{{Path: "Internal", Before: "false", After: "true"}}, net.Diff); diff != "" {
		t.Errorf("network diff (-want +got):\n%s", diff)
	}
	if s := p.Summary(); s != (Summary{Add: 1, Change: 2, Destroy: 1}) {
		t.Errorf("summary = %+v: a replace counts as one add and one destroy", s)
	}
	assertStable(t, v2, live, p)
}

func TestBuildPlanNetworkEqualDeclarationsNeverReplace(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp")}
	declared := overlay("wp", "default", func(n *network.CreateOptions) {
		n.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.9.0.0/24"}}}
		n.Attachable = true
	})
	lv := stored(declared)
	lv.Network.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.9.0.0/24", Gateway: "10.9.0.1"}}}
	lv.Network.Labels[resource.LabelSpecHash] = "stale"
	p := plan(t, newSet(stacks, declared), newSet(nil, lv), Options{})
	if len(p.Changes) != 0 {
		t.Errorf("allocator gateway or a stale hash replaced a network:\n%s", strings.Join(summarize(p), "\n"))
	}
}

func TestBuildPlanKeepsNetworkInUse(t *testing.T) {
	old := newSet([]resource.Stack{stackDoc("wp")}, overlay("wp", "shared"), service("wp", "web", onNetwork("wp_shared")))
	live := liveOf(old)
	foreign := stored(service("other", "tool", onNetwork("wp_shared")))
	delete(foreign.Service.Labels, resource.LabelManagedBy)
	live.Resources[foreign.Key] = foreign
	// wp_shared left the source; other_tool (not ours) still uses it.
	desired := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "web"))
	p := plan(t, desired, live, Options{})
	for _, c := range p.Changes {
		if c.Key == resource.NetworkKey("wp_shared") {
			t.Errorf("plans %c %s although other_tool uses it", c.Action, c.Key)
		}
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "other_tool") {
		t.Errorf("warnings = %q", p.Warnings)
	}
}

func TestBuildPlanOrder(t *testing.T) {
	stacks := []resource.Stack{
		stackDoc("app", func(s *resource.Stack) { s.DependsOn = []string{"db", "cache"} }),
		stackDoc("db"),
		stackDoc("cache", func(s *resource.Stack) { s.DependsOn = []string{"db"} }),
		stackDoc("zeta"),
	}
	desired := newSet(stacks,
		service("app", "web"), service("db", "pg"), service("cache", "redis"), service("zeta", "misc"),
		overlay("app", "default"), overlay("db", "default"), secret("db", "pw", "x"), config("app", "c", "y"))
	oldStack := newSet(nil, service("gone", "svc"), overlay("gone", "default"), secret("gone", "s", "z"), config("gone", "c", "w"))
	live := liveOf(oldStack)
	p := plan(t, desired, live, Options{AllowMassDelete: true})
	want := []string{
		"+ swarm/network/app_default (NotInCluster)",
		"+ swarm/network/db_default (NotInCluster)",
		"+ swarm/secret/db_pw (NotInCluster)",
		"+ swarm/config/app_c (NotInCluster)",
		"+ swarm/service/db_pg (NotInCluster)",
		"+ swarm/service/cache_redis (NotInCluster)",
		"+ swarm/service/app_web (NotInCluster)",
		"+ swarm/service/zeta_misc (NotInCluster)",
		"- swarm/service/gone_svc (NotInSource)",
		"- swarm/config/gone_c (NotInSource)",
		"- swarm/secret/gone_s (NotInSource)",
		"- swarm/network/gone_default (NotInSource)",
	}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"db", "cache", "app", "zeta"}, p.StackOrder); diff != "" {
		t.Errorf("StackOrder (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][]string{"app": {"cache", "db"}, "cache": {"db"}}, p.StackDeps); diff != "" {
		t.Errorf("StackDeps (-want +got):\n%s", diff)
	}
	// The order does not depend on map iteration.
	for i := 0; i < 20; i++ {
		if again := plan(t, desired, live, Options{AllowMassDelete: true}); !cmp.Equal(summarize(again), summarize(p)) {
			t.Fatalf("plan order is not deterministic")
		}
	}
}

func TestBuildPlanDependencyCycle(t *testing.T) {
	stacks := []resource.Stack{
		stackDoc("a", func(s *resource.Stack) { s.DependsOn = []string{"b"} }),
		stackDoc("b", func(s *resource.Stack) { s.DependsOn = []string{"c"} }),
		stackDoc("c", func(s *resource.Stack) { s.DependsOn = []string{"a"} }),
		stackDoc("d", func(s *resource.Stack) { s.DependsOn = []string{"a"} }),
	}
	_, err := BuildPlan(newSet(stacks), resource.NewSet(), Options{})
	var cycle *CycleError
	if !errors.As(err, &cycle) {
		t.Fatalf("err = %v, want *CycleError", err)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "a"}, cycle.Cycle); diff != "" {
		t.Errorf("cycle (-want +got):\n%s", diff)
	}
}

func TestBuildPlanLongSecretNamesDoNotShareVersions(t *testing.T) {
	stacks := []resource.Stack{stackDoc("wp")}
	long := strings.Repeat("n", 60)
	build := func(data string) *resource.Set {
		return newSet(stacks, secret("wp", long+"a", data), secret("wp", long+"b", data),
			service("wp", "web", usesSecret("wp_"+long+"a", "a"), usesSecret("wp_"+long+"b", "b")))
	}
	live := liveOf(build("v1"))
	v2 := build("v2")
	p := plan(t, v2, live, Options{})
	live = applyPlan(t, live, p)
	if n := countKind(live, resource.KindSecret); n != 2 {
		t.Fatalf("%d secrets after rotating two, want 2:\n%s", n, strings.Join(summarize(p), "\n"))
	}
	if again := plan(t, v2, live, Options{}); len(again.Changes) != 0 || len(again.Warnings) != 0 {
		t.Fatalf("second plan not empty:\n%s\nwarnings: %q", strings.Join(summarize(again), "\n"), again.Warnings)
	}
}

func route(name string, port int, weight int) resource.Route {
	return resource.Route{Name: name,
		Service:      resource.ServiceRef{Stack: "wp", Name: "web", TargetPort: 80},
		LoadBalancer: resource.LoadBalancer{ID: "lb-1", Region: "cn-beijing"},
		Listener:     resource.Listener{Protocol: "http", Port: port, HealthCheck: &resource.HealthCheck{URI: "/license.txt"}},
		Backends:     resource.Backends{NodeRole: "any", Weight: weight}}
}

func slbPair(name string, port, weight int, owner string) (group, listener resource.Resource) {
	rt := route(name, port, weight)
	key := fmt.Sprintf("lb-1:%d/http", port)
	group = resource.Resource{Key: resource.Key{Sink: resource.SinkSLB, Kind: resource.KindVServerGroup, Name: key}, Route: &rt, ManagedBy: owner}
	listener = resource.Resource{Key: resource.Key{Sink: resource.SinkSLB, Kind: resource.KindListener, Name: key}, Route: &rt, ManagedBy: owner}
	return group, listener
}

func TestBuildPlanSLB(t *testing.T) {
	dg, dl := slbPair("wp-http", 8080, 100, "")
	dg2, dl2 := slbPair("wp-alt", 8081, 100, "")
	desired := newSet([]resource.Stack{stackDoc("wp")}, service("wp", "web"), dg, dl, dg2, dl2)
	live := liveOf(newSet(nil, service("wp", "web")))
	lg, ll := slbPair("wp-http", 8080, 50, testInstance) // weight changed in the source
	og, ol := slbPair("wp-old", 9090, 100, testInstance) // route removed from the source
	fg, fl := slbPair("theirs", 7070, 100, "")           // someone else's listener
	for _, r := range []resource.Resource{lg, ll, og, ol, fg, fl} {
		live.Resources[r.Key] = r
	}
	p := plan(t, desired, live, Options{})
	want := []string{
		"~ slb/vservergroup/lb-1:8080/http (SourceChanged)",
		"+ slb/vservergroup/lb-1:8081/http (NotInCluster)",
		"~ slb/listener/lb-1:8080/http (SourceChanged)",
		"+ slb/listener/lb-1:8081/http (NotInCluster)",
		"- slb/listener/lb-1:9090/http (NotInSource)",
		"- slb/vservergroup/lb-1:9090/http (NotInSource)",
	}
	if diff := cmp.Diff(want, summarize(p)); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if d := findChange(t, p, "slb/listener/lb-1:8080/http").Diff; !cmp.Equal(d, []FieldDiff{{Path: "Backends.Weight", Before: "50", After: "100"}}) {
		t.Errorf("listener diff = %+v", d)
	}

	// A desired listener on a port someone else's listener holds is a conflict.
	cg, cl := slbPair("wp-http", 7070, 100, "")
	_, err := BuildPlan(newSet(nil, cg, cl), live, Options{AllowMassDelete: true})
	var conflict *ConflictError
	if !errors.As(err, &conflict) || len(conflict.Conflicts) != 2 {
		t.Errorf("err = %v, want a conflict on both SLB objects", err)
	}
}
