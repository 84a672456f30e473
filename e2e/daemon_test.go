//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/capstan-dev/capstan/daemon"
)

// daemonProc is `capstan run` as a subprocess, the way an operator starts it.
type daemonProc struct {
	cmd  *exec.Cmd
	url  string // its HTTP API, http://127.0.0.1:PORT
	done chan struct{}
	err  error // the exit, once done is closed

	mu  sync.Mutex
	log []string // stderr lines (JSON log records)
}

// startDaemon runs capstan run against the suite's Git server and SLB emulator, with
// the given extra flags, and returns once it serves HTTP.
func (s *suite) startDaemon(extra ...string) (*daemonProc, error) {
	args := []string{"run",
		"--source", s.git.url(), "--ref", "main",
		"--interval", s.interval.String(),
		"--listen", "127.0.0.1:0",
		"--instance", s.stack,
		"--slb-endpoint", s.emu.URL(),
		"--cache-dir", filepath.Join(s.tmp, "cache"),
		"--notify-url", s.notes.url(),
		"--timeout", "90s",
		"--log-format", "json",
	}
	args = append(args, extra...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID="+slbKeyID,
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET="+slbKeySecret,
		"CAPSTAN_WEBHOOK_SECRET="+s.webhookSecret,
	)
	if s.docker != nil {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+s.docker.host())
	}
	// If the test process dies, so does its daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start capstan run: %w", err)
	}
	d := &daemonProc{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	logFile, _ := os.Create(filepath.Join(s.tmp, fmt.Sprintf("capstan-run-%d.log", cmd.Process.Pid)))
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if logFile != nil {
				fmt.Fprintln(logFile, line)
			}
			d.mu.Lock()
			d.log = append(d.log, line)
			d.mu.Unlock()
			var rec struct {
				Msg     string `json:"msg"`
				Address string `json:"address"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving HTTP" {
				select {
				case addr <- rec.Address:
				default:
				}
			}
		}
		if logFile != nil {
			logFile.Close()
		}
		d.err = cmd.Wait()
		close(d.done)
	}()
	select {
	case a := <-addr:
		d.url = "http://" + a
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("capstan run exited before serving HTTP (%v):\n%s", d.err, d.logTail(30))
	case <-time.After(time.Minute):
		_ = d.stop()
		return nil, fmt.Errorf("capstan run did not serve HTTP within a minute:\n%s", d.logTail(30))
	}
}

// stop sends SIGTERM, as docker stop or systemd would, and waits for the exit.
func (d *daemonProc) stop() error {
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		return errors.New("capstan run did not stop within 2 minutes of SIGTERM; killed")
	}
	var exit *exec.ExitError
	if errors.As(d.err, &exit) {
		return fmt.Errorf("capstan run exited with %v after SIGTERM:\n%s", d.err, d.logTail(20))
	}
	return nil
}

func (d *daemonProc) logTail(n int) string {
	if d == nil {
		return "(no daemon)"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	lines := d.log
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSince returns the number of log lines so far, for logContains.
func (d *daemonProc) logLen() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.log)
}

// status fetches /api/v1/status.
func (d *daemonProc) status(t testing.TB) daemon.Status {
	t.Helper()
	var st daemon.Status
	body, err := httpGet(d.url + "/api/v1/status")
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	if err != nil {
		t.Fatalf("GET /api/v1/status: %v\n--- capstan run log (end) ---\n%s", err, d.logTail(30))
	}
	return st
}

// metrics fetches /metrics and returns the samples whose name starts with prefix,
// "name{labels}" -> value.
func (d *daemonProc) metrics(t testing.TB, prefix string) map[string]float64 {
	t.Helper()
	body, err := httpGet(d.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the samples of m whose series contains every part.
func sum(m map[string]float64, parts ...string) float64 {
	total := 0.0
next:
	for k, v := range m {
		for _, p := range parts {
			if !strings.Contains(k, p) {
				continue next
			}
		}
		total += v
	}
	return total
}

// webhook delivers a generic push notification, signed like a CI job would sign it.
func (s *suite) webhook(t testing.TB) {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	mac := hmac.New(sha256.New, []byte(s.webhookSecret))
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, s.dmn.url+"/webhook/generic", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Capstan-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %s: %s", resp.Status, b)
	}
}

func httpGet(url string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// revision is how capstan names a commit on main.
func revision(h plumbing.Hash) string { return "main@sha1:" + h.String() }

// push commits d to main and pushes it; it returns the revision capstan will report.
func (s *suite) push(t testing.TB, msg string, d desired) string {
	t.Helper()
	if err := s.repo.branch("main"); err != nil {
		t.Fatalf("checkout main: %v", err)
	}
	h, err := s.repo.commit(msg, s.files(d))
	if err != nil {
		t.Fatalf("push %q: %v", msg, err)
	}
	return revision(h)
}

// converged reports whether capstan applied rev and everything it manages is in sync and
// healthy.
func converged(st daemon.Status, rev string) (bool, string) {
	if st.Revision != rev || st.Phase != daemon.PhaseReady {
		msg := ""
		if st.LastError != nil {
			msg = "; last error: " + st.LastError.Message
		}
		return false, fmt.Sprintf("phase %s, revision %s (want %s)%s", st.Phase, st.Revision, rev, msg)
	}
	for _, sk := range st.Stacks {
		if sk.Sync != daemon.Synced || sk.Health != "Healthy" {
			return false, fmt.Sprintf("stack %s: %s, %s", sk.Name, sk.Sync, sk.Health)
		}
	}
	for _, r := range st.Routes {
		if r.Sync != daemon.Synced {
			return false, fmt.Sprintf("route %s: %s %s", r.Name, r.Sync, r.LastError)
		}
	}
	return true, ""
}

// waitConverged waits until capstan reports rev applied and healthy.
func (s *suite) waitConverged(t testing.TB, rev string, timeout time.Duration) daemon.Status {
	t.Helper()
	var st daemon.Status
	s.waitFor(t, timeout, "capstan converged on "+rev, func() (bool, string) {
		st = s.dmn.status(t)
		return converged(st, rev)
	})
	return st
}

// listenerStatus is the emulated listener's status on the route's port ("" when absent).
func (s *suite) listenerStatus(port int) string {
	for _, lb := range s.emu.Snapshot().LoadBalancers {
		if lb.ID != lbID {
			continue
		}
		for _, l := range lb.Listeners {
			if l.Port == port {
				return l.Status
			}
		}
	}
	return ""
}

// getThroughSLB asks the emulated SLB listener for /license.txt.
func (s *suite) getThroughSLB(c *http.Client) (string, error) {
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/license.txt", s.listenerPort))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s", resp.Status)
	}
	return string(b), nil
}

// waitServing waits until a GET through the SLB answers with wordpress's message.
func (s *suite) waitServing(t testing.TB, message string, timeout time.Duration) string {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	var body string
	s.waitFor(t, timeout, "GET /license.txt through the SLB answers with message "+message, func() (bool, string) {
		b, err := s.getThroughSLB(c)
		body = b
		if err != nil {
			return false, err.Error() + " " + b
		}
		return strings.Contains(b, "message: "+message+"\n"), b
	})
	return body
}

// notifications collects what capstan run posts to its --notify-url.
type notifications struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []daemon.Event
}

func newNotifications() (*notifications, error) {
	n := &notifications{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev daemon.Event
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.mu.Lock()
		n.events = append(n.events, ev)
		n.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	return n, nil
}

func (n *notifications) url() string { return n.srv.URL + "/notify" }
func (n *notifications) close()      { n.srv.Close() }

// since returns the events received after the first skip ones.
func (n *notifications) since(skip int) []daemon.Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	if skip > len(n.events) {
		return nil
	}
	return append([]daemon.Event(nil), n.events[skip:]...)
}

func (n *notifications) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.events)
}

// ctx is a context for one API call from a test.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
