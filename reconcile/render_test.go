package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// renderCases are plans built by BuildPlan from realistic sources, one per situation a
// reader meets.
func renderCases(t *testing.T) map[string]Plan {
	t.Helper()
	cases := map[string]Plan{}

	wp := newSet([]resource.Stack{stackDoc("wordpress")},
		overlay("wordpress", "default"),
		service("wordpress", "wordpress", env("WORDPRESS_DB_PASSWORD=password"), func(s *swarm.ServiceSpec) {
			cs(s).Image, s.Labels[resource.LabelImage] = "wordpress:4.5.3", "wordpress:4.5.3"
			s.EndpointSpec.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishMode: "ingress"}}
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "any"}
		}),
		service("wordpress", "mysql", env("MYSQL_ROOT_PASSWORD=password"), func(s *swarm.ServiceSpec) {
			cs(s).Image, s.Labels[resource.LabelImage] = "mysql:5.7.13", "mysql:5.7.13"
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "any"}
		}))
	cases["create"] = plan(t, wp, resource.NewSet(), Options{})
	cases["empty"] = plan(t, wp, liveOf(wp), Options{})

	// A later commit: scale wordpress, change an env secret and a plain env var in api,
	// rotate a secret, make the worker global, drop a service; meanwhile someone edited
	// two services by hand, one in a stack that does not self-heal.
	stacks := []resource.Stack{stackDoc("shop"), stackDoc("ops", func(s *resource.Stack) { s.SelfHeal = false; s.Prune = false })}
	before := newSet(stacks,
		overlay("shop", "default"), overlay("shop", "back"),
		secret("shop", "db_password", "v1"),
		service("shop", "web", replicas(2)),
		service("shop", "api", env("API_TOKEN=t1", "LOG_LEVEL=info"), usesSecret("shop_db_password", "db_password")),
		service("shop", "worker", replicas(3)),
		service("shop", "legacy"),
		service("ops", "metrics"),
		service("ops", "old"))
	live := liveOf(before)
	live.Resources[resource.ServiceKey("shop_web")].Service.TaskTemplate.ContainerSpec.Env = []string{"DEBUG=1"}
	live.Resources[resource.ServiceKey("ops_metrics")].Service.Labels["owner"] = "me"
	after := newSet(stacks,
		overlay("shop", "default"), overlay("shop", "back", func(n *network.CreateOptions) { n.Internal = true }),
		secret("shop", "db_password", "v2"),
		service("shop", "web", replicas(2)),
		service("shop", "api", env("API_TOKEN=t2", "LOG_LEVEL=debug"), usesSecret("shop_db_password", "db_password"), onNetwork("shop_back")),
		service("shop", "worker", global()),
		service("ops", "metrics"))
	p, err := BuildPlan(after, live, Options{Revision: testRevision2})
	if err != nil {
		t.Fatal(err)
	}
	cases["mixed"] = p

	// A plan the prune guard refuses is still shown.
	refused, err := BuildPlan(resource.NewSet(), liveOf(newSet(nil, service("shop", "a"), service("shop", "b"))), Options{Revision: testRevision2})
	if !errors.As(err, new(*MassDeleteError)) {
		t.Fatalf("guard: %v", err)
	}
	cases["deletes"] = refused
	return cases
}

func TestRenderGolden(t *testing.T) {
	renderers := map[string]func(*bytes.Buffer, Plan) error{
		"txt":       func(b *bytes.Buffer, p Plan) error { return RenderText(b, p) },
		"color.txt": func(b *bytes.Buffer, p Plan) error { return RenderText(b, p, RenderOptions{Color: true}) },
		"md":        func(b *bytes.Buffer, p Plan) error { return RenderMarkdown(b, p) },
		"json":      func(b *bytes.Buffer, p Plan) error { return RenderJSON(b, p) },
	}
	for name, p := range renderCases(t) {
		for ext, render := range renderers {
			if ext == "color.txt" && name != "mixed" {
				continue
			}
			t.Run(name+"."+ext, func(t *testing.T) {
				var b bytes.Buffer
				if err := render(&b, p); err != nil {
					t.Fatal(err)
				}
				golden(t, "render/"+name+"."+ext, b.Bytes())
			})
		}
	}
}

func TestRenderTextLastLine(t *testing.T) {
	for name, p := range renderCases(t) {
		var b bytes.Buffer
		if err := RenderText(&b, p); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		want := summaryLine(p.Summary())
		if len(visible(p)) == 0 && len(p.Drift) == 0 && len(p.Warnings) == 0 {
			want = noChangesLine
		}
		if last != want {
			t.Errorf("%s: last line %q, want %q", name, last, want)
		}
	}
}

func TestRenderNeverShowsSecrets(t *testing.T) {
	for name, p := range renderCases(t) {
		for _, render := range []func(*bytes.Buffer, Plan) error{
			func(b *bytes.Buffer, p Plan) error { return RenderText(b, p) },
			func(b *bytes.Buffer, p Plan) error { return RenderMarkdown(b, p) },
			func(b *bytes.Buffer, p Plan) error { return RenderJSON(b, p) },
		} {
			var b bytes.Buffer
			if err := render(&b, p); err != nil {
				t.Fatal(err)
			}
			// "password" is the WordPress env value, t1/t2 the API token, v1/v2 the secret.
			for _, secret := range []string{"=password", ": password", "\"password\"", "t1", "t2", "\"v1\"", "\"v2\"", "djE", "djI"} {
				if strings.Contains(b.String(), secret) {
					t.Errorf("%s: output contains %q:\n%s", name, secret, b.String())
				}
			}
		}
	}
}

func TestRenderJSONFormat(t *testing.T) {
	p := renderCases(t)["mixed"]
	var b bytes.Buffer
	if err := RenderJSON(&b, p); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		FormatVersion string `json:"format_version"`
		Changes       []struct {
			Action, Key, Reason string
		} `json:"changes"`
		Drift   []struct{ Key string } `json:"drift"`
		Summary Summary                `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != "1" || doc.Summary != p.Summary() || len(doc.Changes) != len(visible(p)) || len(doc.Drift) != len(p.Drift) {
		t.Errorf("JSON document does not match the plan: %+v", doc)
	}
	for i, c := range visible(p) {
		if doc.Changes[i].Action != c.Action.String() || doc.Changes[i].Key != c.Key.String() {
			t.Errorf("change %d = %+v, want %s %s", i, doc.Changes[i], c.Action, c.Key)
		}
	}
}

func TestRenderMarkdownFenceSurvivesBackticks(t *testing.T) {
	p := Plan{Changes: []Change{{Action: Update, Key: resource.ServiceKey("x_y"), Reason: SourceChanged,
		Diff: []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Args", Before: "[\"a\"]", After: "[\"```\"]"}}}}}
	var b bytes.Buffer
	if err := RenderMarkdown(&b, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "````diff\n") {
		t.Errorf("fence not lengthened past a ``` value:\n%s", b.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderReportsWriteErrors(t *testing.T) {
	p := renderCases(t)["mixed"]
	for name, err := range map[string]error{
		"text":     RenderText(failingWriter{}, p),
		"markdown": RenderMarkdown(failingWriter{}, p),
		"json":     RenderJSON(failingWriter{}, p),
	} {
		if err == nil {
			t.Errorf("%s: write error not returned", name)
		}
	}
}
