package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
	"github.com/capstan-dev/capstan/resource"
)

// These tests run the capstan command in-process against the real engine. Each uses its
// own stack name, also as its --instance (so one test's source never prunes another's
// stacks, nor a demo's), and removes it at the end.

// runCapstan runs one capstan command line and returns its output and exit code.
func runCapstan(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), code
}

// writeFiles writes files (relative path → content) under dir, replacing STACK with stack.
func writeFiles(t *testing.T, dir, stack string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(content, "STACK", stack)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const stackDoc = `apiVersion: capstan.dev/v1alpha1
kind: Stack
metadata:
  name: STACK
spec:
  compose: [compose.yaml]
  prune: PRUNE
  selfHeal: HEAL
`

func stackDocWith(prune, heal bool) string {
	s := strings.Replace(stackDoc, "PRUNE", boolStr(prune), 1)
	return strings.Replace(s, "HEAL", boolStr(heal), 1)
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

const twoServices = `services:
  web:
    image: capstan-testapp:dev
    environment:
      MESSAGE: hello
    deploy:
      replicas: REPLICAS
  api:
    image: capstan-testapp:dev
    environment:
      MESSAGE: api
`

type swarmEnv struct {
	t     *testing.T
	cli   *client.Client
	stack string
	dir   string
}

func newSwarmEnv(t *testing.T, prefix string) *swarmEnv {
	t.Helper()
	cli, _ := dockertest.Client(t)
	dockertest.Image(t)
	stack := dockertest.UniqueName(t, prefix)
	dockertest.Cleanup(t, cli, stack)
	return &swarmEnv{t: t, cli: cli, stack: stack, dir: t.TempDir()}
}

func (e *swarmEnv) write(files map[string]string) { writeFiles(e.t, e.dir, e.stack, files) }

func (e *swarmEnv) apply(extra ...string) string {
	e.t.Helper()
	out, errOut, code := runCapstan(e.t, append([]string{"apply", "--instance", e.stack, "--source", e.dir}, extra...)...)
	if code != 0 {
		e.t.Fatalf("apply exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	return out
}

// diff runs diff --detailed-exitcode and returns stdout and the exit code.
func (e *swarmEnv) diff(extra ...string) (string, int) {
	e.t.Helper()
	out, errOut, code := runCapstan(e.t, append([]string{"diff", "--instance", e.stack, "--detailed-exitcode", "--source", e.dir}, extra...)...)
	if code == 1 {
		e.t.Fatalf("diff failed\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	return out, code
}

func (e *swarmEnv) service(name string) swarm.Service {
	e.t.Helper()
	svc, _, err := e.cli.ServiceInspectWithRaw(context.Background(), e.stack+"_"+name, swarm.ServiceInspectOptions{})
	if err != nil {
		e.t.Fatalf("inspect %s_%s: %v", e.stack, name, err)
	}
	return svc
}

func (e *swarmEnv) serviceNames() []string {
	e.t.Helper()
	list, err := e.cli.ServiceList(context.Background(), swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", resource.LabelNamespace+"="+e.stack))})
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Spec.Name)
	}
	return names
}

// runningTaskIDs lists the IDs of a service's running tasks.
func (e *swarmEnv) runningTaskIDs(name string) map[string]bool {
	e.t.Helper()
	tasks, err := e.cli.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", e.stack+"_"+name), filters.Arg("desired-state", "running"))})
	if err != nil {
		e.t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, task := range tasks {
		ids[task.ID] = true
	}
	return ids
}

func envOf(svc swarm.Service) []string { return svc.Spec.TaskTemplate.ContainerSpec.Env }

func TestApplyWordpressExample(t *testing.T) {
	e := newSwarmEnv(t, "wp")
	dockertest.TagAs(t, "wordpress:4.5.3", "mysql:5.7.13")
	copyExample(t, "../../examples/wordpress", e.dir, e.stack)

	out := e.apply()
	if !strings.Contains(out, "Apply complete!") {
		t.Fatalf("apply output lacks the summary:\n%s", out)
	}
	for _, name := range []string{"wordpress", "mysql"} {
		svc := e.service(name)
		labels := svc.Spec.Labels
		for k, want := range map[string]string{
			resource.LabelNamespace: e.stack,
			resource.LabelManagedBy: e.stack,
		} {
			if labels[k] != want {
				t.Errorf("%s label %s = %q, want %q", name, k, labels[k], want)
			}
		}
		if labels[resource.LabelSpecHash] == "" {
			t.Errorf("%s has no spec-hash label", name)
		}
		if _, ok := svc.Spec.TaskTemplate.ContainerSpec.Labels[resource.LabelManagedBy]; ok {
			t.Errorf("%s: capstan labels must not be on container labels (they restart tasks)", name)
		}
		if rp := svc.Spec.TaskTemplate.RestartPolicy; rp == nil || rp.Condition != swarm.RestartPolicyConditionAny {
			t.Errorf("%s restart policy = %+v, want condition any (restart: always)", name, rp)
		}
	}
	wp := e.service("wordpress")
	if ports := wp.Endpoint.Ports; len(ports) != 1 || ports[0].TargetPort != 80 || ports[0].PublishedPort < 30000 {
		t.Errorf("wordpress ports = %+v, want 80 published on an auto-assigned port", ports)
	}
	if _, err := e.cli.NetworkInspect(context.Background(), e.stack+"_default", networkInspectOptions()); err != nil {
		t.Errorf("stack network: %v", err)
	}
	ls, err := dockerCLI("stack", "ls", "--format", "{{.Name}}")
	if err != nil {
		t.Fatalf("docker stack ls: %v", err)
	}
	if !strings.Contains(ls, e.stack) {
		t.Errorf("docker stack ls does not show %s:\n%s", e.stack, ls)
	}

	out, code := e.diff()
	if code != 0 || !strings.Contains(out, "No changes") {
		t.Fatalf("diff after apply: exit %d, want 0 and no changes:\n%s", code, out)
	}
}

func TestSecondApplyIsReadOnly(t *testing.T) {
	e := newSwarmEnv(t, "noop")
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1)})
	e.apply()

	proxy := newCountingProxy(t)
	out, errOut, code := runCapstan(t, "apply", "--instance", e.stack, "--docker-host", proxy.host(), "--source", e.dir)
	if code != 0 {
		t.Fatalf("second apply exited %d:\n%s\n%s", code, out, errOut)
	}
	all, writes := proxy.requests()
	if len(writes) != 0 {
		t.Errorf("second apply wrote: %v", writes)
	}
	if len(all) > 6 {
		t.Errorf("second apply sent %d requests, want at most 6: %v", len(all), all)
	}
	if !strings.Contains(out, "No changes") {
		t.Errorf("second apply output:\n%s", out)
	}
}

func TestReplicasChangeIsOneScale(t *testing.T) {
	e := newSwarmEnv(t, "scale")
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1)})
	e.apply()
	apiTasks := e.runningTaskIDs("api")

	e.write(map[string]string{"compose.yaml": strings.Replace(twoServices, "REPLICAS", "2", 1)})
	out, code := e.diff("-o", "json")
	if code != 2 {
		t.Fatalf("diff exit %d, want 2", code)
	}
	plan := decodePlanJSON(t, out)
	if len(plan.Changes) != 1 || plan.Changes[0].Action != "scale" || plan.Changes[0].Key != "swarm/service/"+e.stack+"_web" {
		t.Fatalf("plan = %+v, want a single scale of %s_web", plan.Changes, e.stack)
	}
	e.apply()
	if got := e.service("web").Spec.Mode.Replicated.Replicas; got == nil || *got != 2 {
		t.Errorf("web replicas = %v, want 2", got)
	}
	if after := e.runningTaskIDs("api"); !sameKeys(apiTasks, after) {
		t.Errorf("api tasks restarted by a scale of web: before %v, after %v", apiTasks, after)
	}
}

func TestEnvChangeUpdatesAndPruneDeletes(t *testing.T) {
	e := newSwarmEnv(t, "upd")
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1)})
	e.apply()

	changed := strings.Replace(strings.Replace(twoServices, "REPLICAS", "1", 1), "MESSAGE: hello", "MESSAGE: changed", 1)
	e.write(map[string]string{"compose.yaml": changed})
	plan := decodePlanJSON(t, mustDiff(t, e, 2))
	if len(plan.Changes) != 1 || plan.Changes[0].Action != "update" {
		t.Fatalf("plan = %+v, want one update", plan.Changes)
	}
	e.apply()
	if env := envOf(e.service("web")); !contains(env, "MESSAGE=changed") {
		t.Errorf("web env = %v, want MESSAGE=changed", env)
	}

	// Remove api with prune: false → kept.
	onlyWeb := changed[:strings.Index(changed, "  api:")]
	e.write(map[string]string{"capstan.yaml": stackDocWith(false, true), "compose.yaml": onlyWeb})
	e.apply()
	if names := e.serviceNames(); len(names) != 2 {
		t.Errorf("prune: false removed a service: %v", names)
	}
	// With prune: true → deleted.
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true)})
	plan = decodePlanJSON(t, mustDiff(t, e, 2))
	if len(plan.Changes) != 1 || plan.Changes[0].Action != "delete" || plan.Changes[0].Key != "swarm/service/"+e.stack+"_api" {
		t.Fatalf("plan = %+v, want the delete of %s_api", plan.Changes, e.stack)
	}
	e.apply()
	if names := e.serviceNames(); len(names) != 1 || names[0] != e.stack+"_web" {
		t.Errorf("services after prune = %v, want only %s_web", names, e.stack)
	}
}

func TestManualDrift(t *testing.T) {
	for _, heal := range []bool{true, false} {
		t.Run("selfHeal="+boolStr(heal), func(t *testing.T) {
			e := newSwarmEnv(t, "drift")
			e.write(map[string]string{"capstan.yaml": stackDocWith(true, heal), "compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1)})
			e.apply()

			svc := e.service("web")
			spec := svc.Spec
			spec.TaskTemplate.ContainerSpec.Env = append(spec.TaskTemplate.ContainerSpec.Env, "X=1")
			if _, err := e.cli.ServiceUpdate(context.Background(), svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			out, _ := e.diff("-o", "json")
			plan := decodePlanJSON(t, out)
			if len(plan.Drift) != 1 || plan.Drift[0].Key != "swarm/service/"+e.stack+"_web" || plan.Drift[0].Reverted != heal {
				t.Fatalf("drift = %+v, want %s_web, reverted=%v", plan.Drift, e.stack, heal)
			}
			if d := plan.Drift[0].Diff; len(d) != 1 || !strings.Contains(d[0].Path, "Env") {
				t.Errorf("drift diff = %+v, want the env field", d)
			}
			e.apply()
			env := envOf(e.service("web"))
			if heal && contains(env, "X=1") {
				t.Errorf("selfHeal: true did not revert the drift: env %v", env)
			}
			if !heal && !contains(env, "X=1") {
				t.Errorf("selfHeal: false reverted the drift: env %v", env)
			}
		})
	}
}

func TestSecretRotation(t *testing.T) {
	e := newSwarmEnv(t, "sec")
	compose := `services:
  web:
    image: capstan-testapp:dev
    secrets: [token]
secrets:
  token:
    file: ./token.txt
`
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": compose, "token.txt": "one"})
	e.apply()
	first := e.service("web").Spec.TaskTemplate.ContainerSpec.Secrets
	if len(first) != 1 {
		t.Fatalf("secrets = %+v", first)
	}

	e.write(map[string]string{"token.txt": "two"})
	e.apply()
	second := e.service("web").Spec.TaskTemplate.ContainerSpec.Secrets
	if len(second) != 1 || second[0].SecretName == first[0].SecretName ||
		!strings.HasPrefix(second[0].SecretName, e.stack+"_token_") || len(second[0].SecretName) != len(e.stack+"_token_")+8 {
		t.Fatalf("after rotation the service uses %+v, want a new %s_token_<hash8>", second, e.stack)
	}
	if second[0].File == nil || second[0].File.Name != "token" {
		t.Errorf("rotated secret target = %+v, want it still mounted as token", second[0].File)
	}
	secrets, err := e.cli.SecretList(context.Background(), swarm.SecretListOptions{
		Filters: filters.NewArgs(filters.Arg("label", resource.LabelNamespace+"="+e.stack))})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 1 || secrets[0].Spec.Name != second[0].SecretName {
		var names []string
		for _, s := range secrets {
			names = append(names, s.Spec.Name)
		}
		t.Errorf("secrets left: %v, want only %s", names, second[0].SecretName)
	}
	if out, code := e.diff(); code != 0 {
		t.Errorf("diff after rotation: exit %d\n%s", code, out)
	}
}

func TestUnownedServiceConflict(t *testing.T) {
	e := newSwarmEnv(t, "own")
	replicas := uint64(1)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: e.stack + "_web", Labels: map[string]string{resource.LabelNamespace: e.stack}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "capstan-testapp:dev",
			Env: []string{"MESSAGE=mine"}}},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	created, err := e.cli.ServiceCreate(context.Background(), spec, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := e.service("web")
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": `services:
  web:
    image: capstan-testapp:dev
`})
	out, errOut, code := runCapstan(t, "apply", "--instance", e.stack, "--source", e.dir)
	if code != 1 || !strings.Contains(errOut, e.stack+"_web") || !strings.Contains(errOut, "--adopt") {
		t.Fatalf("apply over an unowned service: exit %d, want 1 and a conflict naming it and --adopt\n%s\n%s", code, out, errOut)
	}
	after := e.service("web")
	if after.ID != created.ID || after.Version.Index != before.Version.Index {
		t.Errorf("the unowned service was touched: version %d → %d", before.Version.Index, after.Version.Index)
	}
}

func TestEmptySourceIsRefusedAsMassDelete(t *testing.T) {
	e := newSwarmEnv(t, "mass")
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": strings.Replace(twoServices, "REPLICAS", "1", 1)})
	e.apply()

	empty := t.TempDir()
	out, errOut, code := runCapstan(t, "apply", "--instance", e.stack, "--source", empty)
	if code != 1 || !strings.Contains(errOut, "--allow-mass-delete") {
		t.Fatalf("apply of an empty source: exit %d, want 1 naming --allow-mass-delete\n%s\n%s", code, out, errOut)
	}
	if names := e.serviceNames(); len(names) != 2 {
		t.Errorf("services after a refused mass delete: %v, want both", names)
	}
}

func TestRollbackIsReportedAsFailure(t *testing.T) {
	e := newSwarmEnv(t, "rb")
	compose := `services:
  web:
    image: capstan-testapp:dev
    environment:
      MESSAGE: v1
    deploy:
      update_config:
        failure_action: rollback
        monitor: 3s
      rollback_config:
        monitor: 1s
`
	e.write(map[string]string{"capstan.yaml": stackDocWith(true, true), "compose.yaml": compose})
	e.apply()

	bad := strings.Replace(compose, "MESSAGE: v1", "MESSAGE: v2\n      FAIL_AFTER: 0s", 1)
	e.write(map[string]string{"compose.yaml": bad})
	out, errOut, code := runCapstan(t, "apply", "--instance", e.stack, "--source", e.dir)
	if code != 1 || !strings.Contains(out+errOut, "roll") {
		t.Fatalf("apply of a failing update: exit %d, want 1 reporting the rollback\n%s\n%s", code, out, errOut)
	}
	if env := envOf(e.service("web")); !contains(env, "MESSAGE=v1") {
		t.Errorf("after rollback env = %v, want MESSAGE=v1 back", env)
	}
}
