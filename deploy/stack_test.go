// Package deploy_test deploys capstan.stack.yml to the test swarm and watches that
// capstan, running as a Swarm service from the locally built image, follows a Git
// repository and applies a pushed commit when a signed webhook arrives.
package deploy_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/fluxcd/pkg/gittestserver"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	"sigs.k8s.io/yaml"

	"github.com/capstan-dev/capstan/internal/dockertest"
)

func TestMain(m *testing.M) {
	// The Git server runs the git binary: keep the machine's configuration out of it.
	os.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	log.SetOutput(io.Discard) // gitkit logs every request
	os.Exit(m.Run())
}

const appStack = `apiVersion: capstan.dev/v1alpha1
kind: Stack
metadata:
  name: APP
spec:
  compose: [compose.yaml]
  prune: true
  selfHeal: true
`

const appCompose = `services:
  web:
    image: capstan-testapp:dev
    environment:
      MESSAGE: deployed by capstan in a service
    deploy:
      replicas: REPLICAS
`

func TestStackFileRunsCapstan(t *testing.T) {
	cli, _ := dockertest.Client(t)
	dockertest.Image(t)
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skipf("skipping: the docker CLI deploys the stack file: %v", err)
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && h != "unix:///var/run/docker.sock" {
		t.Skipf("skipping: the stack file mounts /var/run/docker.sock, and DOCKER_HOST is %s", h)
	}
	ctx := t.Context()
	image := buildImage(t)

	srv := gittestserver.NewGitServer(t.TempDir()).AutoCreate()
	if err := srv.StartHTTP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.StopHTTP)
	repoURL := srv.HTTPAddress() + "/ops/swarm.git"

	app := dockertest.UniqueName(t, "app")
	capStack := dockertest.UniqueName(t, "capd")
	secrets := createSecrets(t, cli, capStack)
	t.Cleanup(func() { removeLeftovers(t, cli, capStack, app) })
	dockertest.Cleanup(t, cli, app)
	dockertest.Cleanup(t, cli, capStack) // runs first: capstan stops before its stack goes

	repo := newRepo(t, repoURL)
	repo.commit(t, app, "1")

	port := freePort(t)
	file := testStackFile(t, port, secrets)
	deploy := exec.CommandContext(ctx, "docker", "stack", "deploy", "--resolve-image", "never", "-c", file, capStack)
	deploy.Env = append(os.Environ(),
		"CAPSTAN_SOURCE="+repoURL, "CAPSTAN_REF=main", "CAPSTAN_PATH=.", "CAPSTAN_INSTANCE="+app,
		"CAPSTAN_INTERVAL=1h", "CAPSTAN_IMAGE="+image, "CAPSTAN_REPLICAS=1")
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}

	logs := func() string {
		out, _ := exec.Command("docker", "service", "logs", "--raw", capStack+"_capstan").CombinedOutput()
		return string(out)
	}
	waitReplicas(t, cli, app+"_web", 1, logs)

	// A new commit, then the webhook: with a one-hour interval only the webhook can
	// make capstan look now.
	repo.commit(t, app, "2")
	body := []byte(`{"ref":"refs/heads/main"}`)
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/webhook/generic", port), bytes.NewReader(body))
	req.Header.Set("X-Capstan-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook: %v\n%s", err, logs())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %s, want 202", resp.Status)
	}
	waitReplicas(t, cli, app+"_web", 2, logs)

	svc, _, err := cli.ServiceInspectWithRaw(ctx, app+"_web", swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rev := svc.Spec.Labels["dev.capstan.revision"]; rev != "main@sha1:"+repo.head {
		t.Errorf("revision label %q, want main@sha1:%s (the pushed commit)", rev, repo.head)
	}
}

const webhookSecret = "deploy-test-webhook-secret"

// buildImage builds the image as make image does, from this checkout, under a test tag.
func buildImage(t *testing.T) string {
	t.Helper()
	const image = "capstan:deploytest"
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	// The test needs no TLS; an empty bundle keeps the image's layout.
	if err := os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "capstan"), "../cmd/capstan")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command("docker", "build", "-q", "-t", image, "-f", "../Dockerfile", dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	return image
}

// testStackFile is capstan.stack.yml as the test swarm can run it: on the host network
// (so capstan reaches the Git server on 127.0.0.1), with no published port (the host
// network has none) and listening on a free port, with the test's secret names.
// Everything else — command, environment, secrets, volumes, healthcheck, placement,
// restart policy — is the file as shipped.
func testStackFile(t *testing.T, port int, secrets map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile("capstan.stack.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), ":9090", ":"+strconv.Itoa(port))
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("capstan.stack.yml: %v", err)
	}
	svc := doc["services"].(map[string]any)["capstan"].(map[string]any)
	delete(svc, "ports")
	svc["networks"] = []any{"hostnet"}
	doc["networks"] = map[string]any{"hostnet": map[string]any{"external": true, "name": "host"}}
	for name, real := range secrets {
		doc["secrets"].(map[string]any)[name] = map[string]any{"external": true, "name": real}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "capstan.stack.yml")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// createSecrets creates the secrets the stack file names, under unique names.
func createSecrets(t *testing.T, cli client.APIClient, prefix string) map[string]string {
	t.Helper()
	values := map[string]string{
		"capstan-git-token":      "unused-by-an-open-server",
		"capstan-webhook-secret": webhookSecret + "\n",
		"capstan-api-token":      "deploy-test-api-token",
		"capstan-slb-key-id":     "unused",
		"capstan-slb-key-secret": "unused",
	}
	names := map[string]string{}
	for name, value := range values {
		real := prefix + "-" + name
		if _, err := cli.SecretCreate(t.Context(), swarm.SecretSpec{Annotations: swarm.Annotations{Name: real}, Data: []byte(value)}); err != nil {
			t.Fatalf("create secret %s: %v", real, err)
		}
		names[name] = real
	}
	return names
}

// removeLeftovers removes what the stack removal does not: the test's secrets, the
// cache volume (once capstan's container let go of it) and the lease.
func removeLeftovers(t *testing.T, cli client.APIClient, capStack, instance string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"capstan-git-token", "capstan-webhook-secret", "capstan-api-token", "capstan-slb-key-id", "capstan-slb-key-secret"} {
		if err := removeRetrying(ctx, func() error { return cli.SecretRemove(ctx, capStack+"-"+name) }); err != nil {
			t.Errorf("remove secret: %v", err)
		}
	}
	if err := removeRetrying(ctx, func() error { return cli.VolumeRemove(ctx, capStack+"_capstan-cache", true) }); err != nil {
		t.Errorf("remove cache volume: %v", err)
	}
	if err := cli.ConfigRemove(ctx, "capstan-lease-"+instance); err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove lease: %v", err)
	}
}

// removeRetrying retries a removal while what holds the object (a stopping container)
// goes away.
func removeRetrying(ctx context.Context, remove func() error) error {
	for {
		err := remove()
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// waitReplicas waits (generously) until the service exists with want running tasks.
func waitReplicas(t *testing.T, cli client.APIClient, name string, want uint64, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		list, err := cli.ServiceList(t.Context(), swarm.ServiceListOptions{Status: true})
		if err != nil {
			t.Fatal(err)
		}
		last = "no such service"
		for _, s := range list {
			if s.Spec.Name != name || s.ServiceStatus == nil {
				continue
			}
			last = fmt.Sprintf("%d/%d running", s.ServiceStatus.RunningTasks, s.ServiceStatus.DesiredTasks)
			if s.ServiceStatus.DesiredTasks == want && s.ServiceStatus.RunningTasks == want {
				return
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: %s, want %d running\ncapstan's log:\n%s", name, last, want, logs())
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// repo is a local clone that pushes to the test Git server.
type repo struct {
	dir  string
	r    *git.Repository
	head string
}

func newRepo(t *testing.T, url string) *repo {
	t.Helper()
	dir := t.TempDir()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	return &repo{dir: dir, r: r}
}

// commit writes the app stack with replicas and pushes it to main.
func (p *repo) commit(t *testing.T, app, replicas string) {
	t.Helper()
	files := map[string]string{
		"stacks/app/stack.yaml":   strings.ReplaceAll(appStack, "APP", app),
		"stacks/app/compose.yaml": strings.ReplaceAll(appCompose, "REPLICAS", replicas),
	}
	wt, err := p.r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(p.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	h, err := wt.Commit("replicas "+replicas, &git.CommitOptions{Author: &object.Signature{Name: "test", Email: "test@example.com", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.r.PushContext(t.Context(), &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		t.Fatalf("push: %v", err)
	}
	p.head = h.String()
}
