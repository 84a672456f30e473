//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// restartEngine stops this machine's dockerd and starts it again, as a crash followed by
// a supervisor's restart would: with systemctl when systemd runs it, otherwise by sending
// SIGTERM and starting the same command line again (hack/ensure-swarm.sh starts it that
// way), logging to /tmp/capstan-dockerd.log. It returns once the engine answers again.
//
// Every container on the machine stops with it, so the test that calls it runs only when
// CAPSTAN_E2E_RESTART_DOCKERD=1 (set by .ci/run).
func restartEngine(t testing.TB, cli *client.Client) time.Duration {
	t.Helper()
	start := time.Now()
	if out, err := exec.Command("systemctl", "is-active", "docker").Output(); err == nil && strings.TrimSpace(string(out)) == "active" {
		if out, err := exec.Command("systemctl", "restart", "docker").CombinedOutput(); err != nil {
			t.Fatalf("systemctl restart docker: %v: %s", err, out)
		}
	} else {
		pid, args := dockerdProcess(t)
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatalf("stop dockerd (pid %d): %v", pid, err)
		}
		deadline := time.Now().Add(90 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("dockerd (pid %d) did not stop within 90s", pid)
			}
			time.Sleep(100 * time.Millisecond)
		}
		logf, err := os.OpenFile(filepath.Join(os.TempDir(), "capstan-dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		// Its own session: the engine outlives this test process.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %v: %v", args, err)
		}
		go func() { _ = cmd.Wait() }()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := cli.Info(ctx)
		cancel()
		if err == nil && info.Swarm.ControlAvailable && string(info.Swarm.LocalNodeState) == "active" {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the engine is not back as a swarm manager 2m after the restart (last: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dockerdProcess finds the running dockerd and its command line.
func dockerdProcess(t testing.TB) (int, []string) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
		if filepath.Base(args[0]) == "dockerd" {
			return pid, args
		}
	}
	t.Fatal("no dockerd process found to restart")
	return 0, nil
}
