package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/manifests"
	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// lifecycle drives one stack through successive source versions on the real engine,
// applying each plan with the real swarm sink.
type lifecycle struct {
	t        *testing.T
	ctx      context.Context
	cli      *client.Client
	sink     *swarmsink.Sink
	root     string
	stack    string
	instance string
}

func newLifecycle(t *testing.T) *lifecycle {
	cli, _ := dockertest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	stack := dockertest.UniqueName(t, "lc")
	dockertest.Cleanup(t, cli, stack)
	instance := "capstan-" + stack
	return &lifecycle{t: t, ctx: ctx, cli: cli, sink: swarmsink.New(cli, instance), root: t.TempDir(), stack: stack, instance: instance}
}

// source writes the stack's files (compose.yml and whatever else is given) and loads it.
func (l *lifecycle) source(files map[string]string) *resource.Set {
	l.t.Helper()
	doc := fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  compose: [compose.yml]\n", l.stack)
	files["stack.yaml"] = doc
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(l.root, name), []byte(content), 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	set, problems := manifests.Load(l.root, manifests.Options{Instance: l.instance})
	if problems.HasErrors() {
		l.t.Fatalf("load: %v", problems)
	}
	return set
}

func (l *lifecycle) plan(desired *resource.Set) reconcile.Plan {
	l.t.Helper()
	live, err := l.sink.Observe(l.ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	p, err := reconcile.BuildPlan(desired, live, reconcile.Options{Instance: l.instance})
	if err != nil {
		l.t.Fatalf("plan: %v", err)
	}
	return p
}

func (l *lifecycle) apply(p reconcile.Plan) {
	l.t.Helper()
	if _, err := reconcile.Apply(l.ctx, p, map[string]reconcile.Sink{l.sink.Name(): l.sink}, reconcile.ApplyOptions{StackDeps: p.StackDeps}); err != nil {
		l.t.Fatalf("apply: %v\nplan:\n%s", err, render(p))
	}
}

// converge applies desired and checks the next plan is empty.
func (l *lifecycle) converge(desired *resource.Set) {
	l.t.Helper()
	l.apply(l.plan(desired))
	if again := l.plan(desired); len(again.Changes) > 0 || len(again.Drift) > 0 {
		l.t.Fatalf("plan after apply is not empty:\n%s", render(again))
	}
}

func render(p reconcile.Plan) string {
	var b strings.Builder
	_ = reconcile.RenderText(&b, p)
	return b.String()
}

func actions(p reconcile.Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, fmt.Sprintf("%c %s/%s (%s)", c.Action, c.Key.Kind, c.Key.Name, c.Reason))
	}
	return out
}

func (l *lifecycle) secretNames() []string {
	l.t.Helper()
	live, err := l.sink.Observe(l.ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	var names []string
	for k, r := range live.Resources {
		if k.Kind == resource.KindSecret && r.Stack == l.stack {
			names = append(names, k.Name)
		}
	}
	return names
}

const lifecycleCompose = `services:
  web:
    image: nginx:1.25
    deploy:
      replicas: %d
    environment:
      LOG_LEVEL: info
    networks: [front, back]
    secrets: [db_password]
networks:
  front: {}
  back:
    internal: %t
secrets:
  db_password:
    file: ./db_password.txt
`

// TestLifecycleOnEngine takes a stack through the changes capstan plans specially —
// scale, secret rotation, a network that must be recreated, manual drift — applying
// each with the real sink, and checks every time that the next plan is empty.
func TestLifecycleOnEngine(t *testing.T) {
	l := newLifecycle(t)
	v1 := l.source(map[string]string{"compose.yml": fmt.Sprintf(lifecycleCompose, 1, false), "db_password.txt": "one"})
	l.converge(v1)

	// Scale: only the replica count changes.
	v2 := l.source(map[string]string{"compose.yml": fmt.Sprintf(lifecycleCompose, 3, false), "db_password.txt": "one"})
	p := l.plan(v2)
	if got := actions(p); len(got) != 1 || !strings.HasPrefix(got[0], "^ service/"+l.stack+"_web") {
		t.Fatalf("scale plan = %q", got)
	}
	l.converge(v2)

	// Rotation: the secret's content changes.
	v3 := l.source(map[string]string{"compose.yml": fmt.Sprintf(lifecycleCompose, 3, false), "db_password.txt": "two"})
	p = l.plan(v3)
	want := []string{"+ secret/", "~ service/" + l.stack + "_web (Rotated)", "- secret/" + l.stack + "_db_password (Rotated)"}
	got := actions(p)
	if len(got) != len(want) {
		t.Fatalf("rotation plan = %q", got)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("rotation plan = %q, want prefixes %q", got, want)
		}
	}
	l.converge(v3)
	if names := l.secretNames(); len(names) != 1 || !strings.HasPrefix(names[0], l.stack+"_db_password_") {
		t.Errorf("secrets after rotation = %q, want one versioned secret", names)
	}

	// A network change Swarm cannot make in place: the network is recreated, its service
	// detached first and attached again.
	v4 := l.source(map[string]string{"compose.yml": fmt.Sprintf(lifecycleCompose, 3, true), "db_password.txt": "two"})
	p = l.plan(v4)
	got = actions(p)
	if len(got) != 2 || !strings.HasPrefix(got[0], "± network/"+l.stack+"_back") || !strings.HasPrefix(got[1], "~ service/"+l.stack+"_web (ImmutableField)") {
		t.Fatalf("network replace plan = %q", got)
	}
	if d := p.Changes[0].Detach; len(d) != 1 || d[0] != resource.ServiceKey(l.stack+"_web") {
		t.Errorf("Detach = %v", d)
	}
	l.converge(v4)

	// Drift: someone edits the service by hand; capstan reverts it.
	l.editByHand(l.stack+"_web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, "DEBUG=1")
	})
	p = l.plan(v4)
	if got := actions(p); len(got) != 1 || got[0] != "~ service/"+l.stack+"_web (Drift)" || len(p.Drift) != 1 {
		t.Fatalf("drift plan = %q, drift %v", got, p.Drift)
	}
	if d := p.Changes[0].Diff; len(d) != 1 || d[0].Path != "TaskTemplate.ContainerSpec.Env[DEBUG]" {
		t.Errorf("drift diff = %+v", d)
	}
	l.converge(v4)
}

// editByHand updates a service as `docker service update` would. Swarm bumps a service's
// version while it rolls out an earlier update, so a stale version is read again.
func (l *lifecycle) editByHand(name string, edit func(*swarm.ServiceSpec)) {
	l.t.Helper()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		var svc swarm.Service
		svc, _, err = l.cli.ServiceInspectWithRaw(l.ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			l.t.Fatal(err)
		}
		spec := svc.Spec
		edit(&spec)
		if _, err = l.cli.ServiceUpdate(l.ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "update out of sequence") {
			break
		}
	}
	l.t.Fatalf("edit %s by hand: %v", name, err)
}
