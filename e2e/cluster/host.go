package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a command and returns its error with the command's output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// checkSubnetFree refuses to build when an interface that is not ours already has an
// address in the bridge's subnet: routes would go astray.
func checkSubnetFree() error {
	_, sub, _ := net.ParseCIDR(subnet)
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && sub.Contains(ipn.IP) {
				return fmt.Errorf("interface %s already has %s, inside %s which the cluster's bridge needs", ifc.Name, ipn, subnet)
			}
		}
	}
	return nil
}

func createNetwork() error {
	steps := [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", BridgeAddr + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	}
	for _, n := range layout {
		ns := n.netns()
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", n.veth(), "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"link", "set", n.veth(), "master", Bridge, "up"},
			[]string{"-n", ns, "addr", "add", n.Addr + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, args := range steps {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// forwardRule lets traffic between the nodes cross the bridge. It goes in DOCKER-USER,
// the chain the host engine leaves to its users, and only when that chain exists: without
// a host engine nothing drops bridged traffic.
var forwardRule = []string{"DOCKER-USER", "-i", Bridge, "-o", Bridge, "-j", "ACCEPT"}

func iptables(args ...string) error { return run("iptables", append([]string{"-w", "10"}, args...)...) }

func dockerUserChain() bool {
	if _, err := exec.LookPath("iptables"); err != nil {
		return false
	}
	return iptables("-n", "-L", "DOCKER-USER") == nil
}

func allowForward() error {
	if !dockerUserChain() {
		return nil
	}
	if iptables(append([]string{"-C"}, forwardRule...)...) == nil {
		return nil
	}
	return iptables(append([]string{"-I"}, forwardRule...)...)
}

func removeForward() error {
	if !dockerUserChain() {
		return nil
	}
	for iptables(append([]string{"-C"}, forwardRule...)...) == nil {
		if err := iptables(append([]string{"-D"}, forwardRule...)...); err != nil {
			return err
		}
	}
	return nil
}

// Down removes the cluster and everything an earlier run of Up may have left, in any
// state: engines are stopped (SIGTERM, then SIGKILL), leftover processes of the nodes
// killed by PID, mounts under their data and exec roots unmounted, the roots removed,
// then the namespaces, veths, bridge and the DOCKER-USER rule. It does nothing when
// there is nothing to remove. logf may be nil.
func Down(ctx context.Context, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := Check(); err != nil {
		return err
	}
	if exists() {
		logf("cluster: removing the cluster")
	}
	var errs []error
	if err := forEach(layout, func(n Node) error { return stopEngine(ctx, n) }); err != nil {
		errs = append(errs, err)
	}
	for _, n := range layout {
		if err := killLeftovers(n); err != nil {
			errs = append(errs, err)
		}
		if err := unmountUnder(n.dataRoot(), n.execRoot()); err != nil {
			errs = append(errs, err)
		}
		for _, p := range []string{n.dataRoot(), n.execRoot(), n.pidFile(), n.socket()} {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
		// The veth first: deleting it is synchronous, while a deleted namespace takes its
		// end of the pair down a moment later.
		if linkExists(n.veth()) {
			if err := run("ip", "link", "del", n.veth()); err != nil && linkExists(n.veth()) {
				errs = append(errs, err)
			}
		}
		if _, err := os.Stat(n.netnsPath()); err == nil {
			if err := run("ip", "netns", "del", n.netns()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if linkExists(Bridge) {
		if err := run("ip", "link", "del", Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeForward(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if left := Leftovers(); len(left) > 0 {
			errs = append(errs, fmt.Errorf("still there after removal: %s", strings.Join(left, "; ")))
		}
	}
	return errors.Join(errs...)
}

// enginePID is the PID in n's pid file when that process is n's dockerd, else 0. The
// check guards against a stale pid file naming a PID reused by another process.
func enginePID(n Node) int {
	b, err := os.ReadFile(n.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !ownsProcess(n, pid) {
		return 0
	}
	return pid
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func stopEngine(ctx context.Context, n Node) error {
	pid := enginePID(n)
	if !alive(pid) {
		return nil
	}
	// dockerd stops its containers on SIGTERM (each within its stop grace period).
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop dockerd of %s (pid %d): %w", n.Name, pid, err)
	}
	if waitGone(ctx, []int{pid}, 60*time.Second) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(ctx, []int{pid}, 10*time.Second) {
		return fmt.Errorf("dockerd of %s (pid %d) does not exit", n.Name, pid)
	}
	return nil
}

func waitGone(ctx context.Context, pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		any := false
		for _, pid := range pids {
			any = any || alive(pid)
		}
		if !any {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ownsProcess reports whether pid belongs to node n: it runs in n's network namespace,
// or its command line names one of n's own paths (dockerd's --data-root, containerd's
// config and the shims' socket under the exec root).
func ownsProcess(n Node, pid int) bool {
	if ino := nsInode(n.netnsPath()); ino != "" {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == "net:["+ino+"]" {
			return true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	paths := []string{n.dataRoot(), n.execRoot(), "/var" + n.execRoot()}
	for _, arg := range strings.Split(string(b), "\x00") {
		for _, p := range paths {
			if arg == p || strings.HasPrefix(arg, p+"/") {
				return true
			}
		}
	}
	return false
}

func nsInode(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	return strconv.FormatUint(st.Ino, 10)
}

// killLeftovers kills, by PID, the processes of node n that outlived its engine (a
// crashed run): containerd, shims, proxies, and the containers under the shims.
func killLeftovers(n Node) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	children := map[int][]int{}
	var owned []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if pp := parentPID(pid); pp > 0 {
			children[pp] = append(children[pp], pid)
		}
		if alive(pid) && ownsProcess(n, pid) {
			owned = append(owned, pid)
		}
	}
	if len(owned) == 0 {
		return nil
	}
	var victims []int
	seen := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] || pid == self {
			return
		}
		seen[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
		victims = append(victims, pid) // descendants first
	}
	for _, pid := range owned {
		walk(pid)
	}
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !waitGone(context.Background(), victims, 15*time.Second) {
		return fmt.Errorf("leftover processes of %s do not exit: %v", n.Name, victims)
	}
	return nil
}

func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// unmountUnder detaches every mount at or below the given directories, deepest first (a
// killed engine leaves its containers' overlay and shm mounts and its sandbox
// namespaces mounted).
func unmountUnder(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				points = append(points, p)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return filepath.Clean(b.String())
}

// Leftovers lists what of a cluster exists on the host: processes, namespaces, links,
// directories, files and the DOCKER-USER rule. Empty after Down.
func Leftovers() []string {
	var out []string
	for _, n := range layout {
		if entries, err := os.ReadDir("/proc"); err == nil {
			for _, e := range entries {
				if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() && alive(pid) && ownsProcess(n, pid) {
					out = append(out, fmt.Sprintf("process %d of %s", pid, n.Name))
				}
			}
		}
		if linkExists(n.veth()) {
			out = append(out, "link "+n.veth())
		}
		for _, p := range []string{n.netnsPath(), n.dataRoot(), n.execRoot(), n.pidFile(), n.socket()} {
			if _, err := os.Lstat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	if linkExists(Bridge) {
		out = append(out, "link "+Bridge)
	}
	if _, err := os.Lstat(stateDir); err == nil {
		out = append(out, stateDir)
	}
	if dockerUserChain() && iptables(append([]string{"-C"}, forwardRule...)...) == nil {
		out = append(out, "iptables rule "+strings.Join(forwardRule, " "))
	}
	return out
}
