package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcd/pkg/gittestserver"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/capstan-dev/capstan/daemon"
	"github.com/capstan-dev/capstan/internal/dockertest"
)

// idleWindow is how long BenchmarkRunIdle200 watches the idle daemon; CAPSTAN_IDLE_WINDOW
// (a Go duration) shortens it for a quick look.
func idleWindow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("CAPSTAN_IDLE_WINDOW")); err == nil && d > 0 {
		return d
	}
	return time.Minute
}

// BenchmarkRunIdle200 measures `capstan run` at rest: a compiled capstan process with a
// 200-service stack under watch (0 replicas: the control plane is the subject), a 10 s
// interval, leader election on and the HTTP server up. Once its first reconcile is done
// it is left alone for a minute, and the benchmark reports its resident memory at the
// end (rss-MB), its peak (peak-rss-MB, VmHWM: the first reconcile included), the CPU it
// used in the window as a share of one core (cpu-%), and the reconciles it ran.
//
//	go test ./cmd/capstan/ -run '^$' -bench RunIdle200 -benchtime 1x
func BenchmarkRunIdle200(b *testing.B) {
	cli, _ := dockertest.Client(b)
	dockertest.Image(b)
	stack := dockertest.UniqueName(b, "idle")
	dockertest.Cleanup(b, cli, stack)
	removeLease(b, cli, stack)
	dir := b.TempDir()
	doc := fmt.Sprintf("apiVersion: capstan.dev/v1alpha1\nkind: Stack\nmetadata:\n  name: %s\nspec:\n  compose: [compose.yaml]\n  resolveImage: never\n", stack)
	for name, content := range map[string]string{"compose.yaml": benchCompose(benchServices), "stack.yaml": doc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	bin := filepath.Join(b.TempDir(), "capstan")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	for range b.N {
		port := freeTCPPort(b)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		var logs bytes.Buffer
		cmd := exec.Command(bin, "run", "--instance", stack, "--source", dir, "--interval", "10s",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--timeout", "0", "--log-format", "json")
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}
		}
		b.Cleanup(stop)

		st := waitStatus(b, url, 5*time.Minute, func(st daemon.Status) bool {
			return st.Phase == daemon.PhaseReady && st.Revision != "" && len(st.Stacks) == 1 && len(st.Stacks[0].Services) == benchServices
		}, &logs)
		if st.Stacks[0].Sync != daemon.Synced {
			b.Fatalf("the 200 services did not sync: %+v", st.Stacks[0].Sync)
		}
		before := len(st.History)
		window := idleWindow()
		b.ResetTimer()
		cpu0 := cpuTicks(b, cmd.Process.Pid)
		start := time.Now()
		time.Sleep(window)
		cpu1 := cpuTicks(b, cmd.Process.Pid)
		elapsed := time.Since(start)
		b.StopTimer()
		rss, peak := memKB(b, cmd.Process.Pid, "VmRSS"), memKB(b, cmd.Process.Pid, "VmHWM")
		st = waitStatus(b, url, time.Minute, func(daemon.Status) bool { return true }, &logs)
		stop()

		// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every architecture Go runs on.
		cpuPct := float64(cpu1-cpu0) / 100 / elapsed.Seconds() * 100
		b.ReportMetric(float64(rss)/1024, "rss-MB")
		b.ReportMetric(float64(peak)/1024, "peak-rss-MB")
		b.ReportMetric(cpuPct, "cpu-%")
		b.ReportMetric(float64(len(st.History)-before), "reconciles")
		for _, h := range st.History {
			if h.Applied != 0 && h.Start.After(start) {
				b.Errorf("an idle reconcile applied something: %+v", h)
			}
		}
	}
}

// cpuTicks is utime+stime of pid, in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("skipping: /proc is needed to measure the process: %v", err)
	}
	// The command name (field 2) may hold spaces; the fields after it are plain.
	fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime
}

// memKB reads a Vm* line of /proc/pid/status.
func memKB(b *testing.B, pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("skipping: /proc is needed to measure the process: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// waitStatus polls url's status until cond holds (a wait, not a timing assertion).
func waitStatus(tb testing.TB, url string, limit time.Duration, cond func(daemon.Status) bool, logs *bytes.Buffer) daemon.Status {
	tb.Helper()
	deadline := time.Now().Add(limit)
	var last daemon.Status
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/api/v1/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if err == nil && cond(last) {
				return last
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("gave up waiting after %s; phase %s, last error %+v\n%s", limit, last.Phase, last.LastError, logs.String())
	return last
}

// BenchmarkWebhookToConverged measures a push going live: a commit to a Git server on
// 127.0.0.1 changes one service's environment, a signed webhook tells capstan run, and
// the clock runs until capstan's status says the new revision converged. Each iteration
// reports:
//
//   - reaction-ms: webhook sent → capstan's first write to the engine (the webhook,
//     fetching the commit, loading it, observing, planning) — capstan's own share;
//
//   - total-ms: webhook sent → reconcile finished, the service rolled out (Swarm's
//     rolling update included; capstan notices convergence within its 500 ms poll).
//
//     go test ./cmd/capstan/ -run '^$' -bench WebhookToConverged -benchtime 5x
func BenchmarkWebhookToConverged(b *testing.B) {
	cli, _ := dockertest.Client(b)
	dockertest.Image(b)
	stack := dockertest.UniqueName(b, "hook")
	dockertest.Cleanup(b, cli, stack)
	removeLease(b, cli, stack)
	log.SetOutput(io.Discard) // gitkit logs every request
	b.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	b.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	b.Setenv("XDG_CACHE_HOME", b.TempDir())

	srv := gittestserver.NewGitServer(b.TempDir()).AutoCreate()
	if err := srv.StartHTTP(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.StopHTTP)
	repoURL := srv.HTTPAddress() + "/ops/swarm.git"
	repo := newBenchRepo(b, repoURL)
	repo.commit(b, stack, "v0")

	secretFile := filepath.Join(b.TempDir(), "webhook")
	const secret = "bench-webhook-secret"
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	proxy := newFaultProxy(b)
	var mu sync.Mutex
	var firstWrite time.Time
	proxy.onWrite = func(r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/update") {
			return
		}
		mu.Lock()
		if firstWrite.IsZero() {
			firstWrite = time.Now()
		}
		mu.Unlock()
	}
	p := startDaemon(b, "--docker-host", proxy.host(), "--instance", stack, "--source", repoURL, "--ref", "main",
		"--interval", "1h", "--webhook-secret-file", secretFile, "--leader-elect=false")
	p.waitFor("the first revision", func(st daemon.Status) bool {
		return st.Phase == daemon.PhaseReady && st.Revision == "main@sha1:"+repo.head
	})

	var reactions, totals []time.Duration
	i := 0
	for b.Loop() {
		i++
		repo.commit(b, stack, fmt.Sprintf("v%d", i))
		want := "main@sha1:" + repo.head
		mu.Lock()
		firstWrite = time.Time{}
		mu.Unlock()

		body := []byte(`{"ref":"refs/heads/main"}`)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, _ := http.NewRequest(http.MethodPost, p.url+"/webhook/generic", bytes.NewReader(body))
		req.Header.Set("X-Capstan-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("webhook answered %s", resp.Status)
		}
		for {
			st := p.status()
			if st.Revision == want && st.Phase == daemon.PhaseReady {
				break
			}
			if st.LastError != nil && st.LastError.Revision == want {
				b.Fatalf("reconcile of %s failed: %s", want, st.LastError.Message)
			}
			time.Sleep(10 * time.Millisecond)
		}
		total := time.Since(t0)
		mu.Lock()
		reaction := firstWrite.Sub(t0)
		mu.Unlock()
		reactions, totals = append(reactions, reaction), append(totals, total)
	}
	b.ReportMetric(ms(median(reactions)), "reaction-ms")
	b.ReportMetric(ms(median(totals)), "total-ms")
	b.ReportMetric(ms(maxOf(reactions)), "max-reaction-ms")
}

func freeTCPPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// benchRepo is a local clone that pushes to the benchmark's Git server.
type benchRepo struct {
	dir  string
	r    *git.Repository
	head string
}

func newBenchRepo(tb testing.TB, url string) *benchRepo {
	tb.Helper()
	dir := tb.TempDir()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		tb.Fatal(err)
	}
	return &benchRepo{dir: dir, r: r}
}

// commit writes one stack whose service carries message, and pushes it.
func (p *benchRepo) commit(tb testing.TB, stack, message string) {
	tb.Helper()
	files := map[string]string{
		"stacks/app/stack.yaml": strings.ReplaceAll(stackDocWith(true, true), "STACK", stack),
		"stacks/app/compose.yaml": "services:\n  web:\n    image: capstan-testapp:dev\n    environment:\n      MESSAGE: " + message +
			"\n    deploy:\n      update_config: {order: start-first}\n",
	}
	wt, err := p.r.Worktree()
	if err != nil {
		tb.Fatal(err)
	}
	for name, content := range files {
		path := filepath.Join(p.dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			tb.Fatal(err)
		}
	}
	h, err := wt.Commit(message, &git.CommitOptions{Author: &object.Signature{Name: "bench", Email: "bench@example.com", When: time.Now()}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.r.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{"refs/heads/main:refs/heads/main"}}); err != nil {
		tb.Fatalf("push: %v", err)
	}
	p.head = h.String()
}
