package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
	slbsink "github.com/capstan-dev/capstan/sinks/slb"
	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

func TestSLBOptions(t *testing.T) {
	files := map[string]string{"/run/secrets/ak": "AKFILE\n", "/run/secrets/sk": "  SKFILE\n"}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	for _, tc := range []struct {
		name    string
		flags   slbFlags
		env     map[string]string
		want    *slbsink.Options
		wantErr string
	}{
		{name: "nothing configured", want: nil},
		{name: "environment", env: map[string]string{envAccessKeyID: "AK", envAccessKeySecret: "SK"},
			want: &slbsink.Options{Instance: "i", Credentials: &slbsink.Credentials{AccessKeyID: "AK", AccessKeySecret: "SK"}}},
		{name: "STS token", env: map[string]string{envAccessKeyID: "AK", envAccessKeySecret: "SK", envSecurityToken: "TOK"},
			want: &slbsink.Options{Instance: "i", Credentials: &slbsink.Credentials{AccessKeyID: "AK", AccessKeySecret: "SK", SecurityToken: "TOK"}}},
		{name: "files", env: map[string]string{envAccessKeyID + "_FILE": "/run/secrets/ak", envAccessKeySecret + "_FILE": "/run/secrets/sk"},
			want: &slbsink.Options{Instance: "i", Credentials: &slbsink.Credentials{AccessKeyID: "AKFILE", AccessKeySecret: "SKFILE"}}},
		{name: "flags only: the SDK's credential chain",
			flags: slbFlags{endpoint: "http://127.0.0.1:9", regions: []string{"cn-hangzhou", " "}, loadBalancers: []string{"lb-1@cn-beijing"}},
			want: &slbsink.Options{Instance: "i", Endpoint: "http://127.0.0.1:9", Regions: []string{"cn-hangzhou"},
				LoadBalancers: []resource.LoadBalancer{{ID: "lb-1", Region: "cn-beijing"}}}},
		{name: "id without secret", env: map[string]string{envAccessKeyID: "AK"}, wantErr: "set both"},
		{name: "value and file", env: map[string]string{envAccessKeyID: "AK", envAccessKeyID + "_FILE": "/run/secrets/ak", envAccessKeySecret: "SK"}, wantErr: "use one"},
		{name: "missing file", env: map[string]string{envAccessKeyID + "_FILE": "/nope", envAccessKeySecret: "SK"}, wantErr: "ALIBABA_CLOUD_ACCESS_KEY_ID_FILE"},
		{name: "bad load balancer", flags: slbFlags{loadBalancers: []string{"lb-1"}}, wantErr: "want ID@REGION"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.flags.options("i", func(k string) string { return tc.env[k] }, readFile)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

const (
	slbTestAK     = "AKIDcmdtest"
	slbTestSecret = "cmd-test-secret"
	slbTestLB     = "lb-cmdtest"
	slbTestRegion = "cn-hangzhou"
)

const routedCompose = `services:
  web:
    image: capstan-testapp:dev
    environment:
      MESSAGE: through the SLB
    ports:
      - target: 80
        published: HOSTPORT
        mode: host
  api:
    image: capstan-testapp:dev
    ports: ["80"]
`

const routeDoc = `apiVersion: capstan.dev/v1alpha1
kind: Route
metadata:
  name: web
spec:
  service: {stack: STACK, name: web, targetPort: 80}
  loadBalancer: {id: lb-cmdtest, region: cn-hangzhou}
  listener:
    protocol: http
    port: LISTENPORT
    healthCheck: {uri: /license.txt, interval: 1, healthyThreshold: 2, unhealthyThreshold: 2}
---
apiVersion: capstan.dev/v1alpha1
kind: Route
metadata:
  name: api
spec:
  service: {stack: STACK, name: api, targetPort: 80}
  loadBalancer: {id: lb-cmdtest, region: cn-hangzhou}
  listener: {protocol: tcp, port: APIPORT}
`

// freePort returns a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// labelNode gives the swarm's node an ECS instance ID for the test, and takes it away
// afterwards (unless the node already had one, which is then used).
func labelNode(t *testing.T, e *swarmEnv) string {
	t.Helper()
	ctx := context.Background()
	nodes, err := e.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(nodes) == 0 {
		t.Fatalf("list nodes: %v", err)
	}
	n := nodes[0]
	if id := n.Spec.Labels[resource.LabelECSInstanceID]; id != "" {
		return id
	}
	spec := n.Spec
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[resource.LabelECSInstanceID] = "i-capstantestnode"
	if err := e.cli.NodeUpdate(ctx, n.ID, n.Version, spec); err != nil {
		t.Fatalf("label node: %v", err)
	}
	t.Cleanup(func() {
		n, _, err := e.cli.NodeInspectWithRaw(context.Background(), n.ID)
		if err != nil {
			t.Errorf("unlabel node: %v", err)
			return
		}
		delete(n.Spec.Labels, resource.LabelECSInstanceID)
		if err := e.cli.NodeUpdate(context.Background(), n.ID, n.Version, n.Spec); err != nil {
			t.Errorf("unlabel node: %v", err)
		}
	})
	return "i-capstantestnode"
}

// capstan apply creates a stack and the route to it in one go (the published port is
// read once Swarm published it), SLB then forwards real HTTP to the service, diff says
// nothing is left to do without writing to SLB, and removing the route deletes the
// listener and its group.
func TestApplyRouteThroughSLB(t *testing.T) {
	e := newSwarmEnv(t, "slb")
	ecs := labelNode(t, e)
	hostPort, listenPort := freePort(t), freePort(t)
	emu := slbemu.New(slbemu.Config{
		Credentials:         []slbemu.Credential{{AccessKeyID: slbTestAK, AccessKeySecret: slbTestSecret}},
		LoadBalancers:       []slbemu.LoadBalancer{{ID: slbTestLB, Region: slbTestRegion}},
		Forward:             true,
		HealthCheckInterval: 100 * time.Millisecond,
		HealthCheckTimeout:  time.Second,
	})
	if err := emu.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	t.Setenv(envAccessKeyID, slbTestAK)
	t.Setenv(envAccessKeySecret, slbTestSecret)

	compose := strings.ReplaceAll(routedCompose, "HOSTPORT", fmt.Sprint(hostPort))
	route := strings.NewReplacer("LISTENPORT", fmt.Sprint(listenPort), "APIPORT", fmt.Sprint(freePort(t))).Replace(routeDoc)
	e.write(map[string]string{"stack.yaml": stackDocWith(true, true), "compose.yaml": compose, "route.yaml": route})

	out := e.apply("--slb-endpoint", emu.URL())
	marker := resource.SLBMarker(e.stack, "web")
	for _, want := range []string{
		"+ slb/vservergroup/" + slbTestLB + "/" + marker,
		fmt.Sprintf("+ slb/listener/%s:%d/http", slbTestLB, listenPort),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "its published port for 80/tcp is known after apply") {
		t.Errorf("apply output does not say the api port is known after apply:\n%s", out)
	}
	st := emu.Snapshot()
	groups := map[string]slbemu.VServerGroupState{}
	for _, g := range st.VServerGroups {
		groups[g.Name] = g
	}
	g := groups[marker]
	if len(groups) != 2 || len(g.Backends) != 1 || g.Backends[0].ServerID != ecs || g.Backends[0].Port != hostPort {
		t.Errorf("groups %+v, want %s holding %s:%d", st.VServerGroups, marker, ecs, hostPort)
	}
	// The api's port was auto-assigned by Swarm during the apply.
	api := e.service("api")
	if ag := groups[resource.SLBMarker(e.stack, "api")]; len(api.Endpoint.Ports) != 1 || len(ag.Backends) != 1 ||
		uint32(ag.Backends[0].Port) != api.Endpoint.Ports[0].PublishedPort {
		t.Errorf("api group %+v, want the port Swarm published (%+v)", ag, api.Endpoint.Ports)
	}
	ls := st.LoadBalancers[0].Listeners
	if len(ls) != 2 {
		t.Fatalf("listeners: %+v", ls)
	}
	for _, l := range ls {
		if l.Status != "running" || l.Attributes["VServerGroupId"] == "" {
			t.Errorf("listener %d/%s: %s %v", l.Port, l.Protocol, l.Status, l.Attributes)
		}
	}

	// Real traffic through the emulated SLB reaches the service (once its task is up
	// and the health check has seen it).
	body := getEventually(t, fmt.Sprintf("http://127.0.0.1:%d/license.txt", listenPort))
	if !strings.Contains(body, "through the SLB") {
		t.Errorf("GET through the SLB answered %q", body)
	}

	emu.ResetCalls()
	diffOut, code := e.diff("--slb-endpoint", emu.URL())
	if code != 0 {
		t.Errorf("diff after apply: exit %d\n%s", code, diffOut)
	}
	if w := emu.CountCalls(true); w != 0 {
		t.Errorf("diff wrote to SLB %d times", w)
	}

	e.write(map[string]string{"route.yaml": "# no route any more\n"})
	out = e.apply("--slb-endpoint", emu.URL(), "--slb-region", slbTestRegion)
	if !strings.Contains(out, "Apply complete! 0 added, 0 changed, 4 destroyed.") {
		t.Errorf("removing the route:\n%s", out)
	}
	st = emu.Snapshot()
	if len(st.VServerGroups) != 0 || len(st.LoadBalancers[0].Listeners) != 0 {
		t.Errorf("after removing the route: %+v", st)
	}
}

// getEventually GETs url until it answers 200, for up to a minute.
func getEventually(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(b)
			}
			err = errors.New(resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s never answered 200: %v", url, last)
	return ""
}

// Without any SLB setting, routes are left out of the plan with a warning, as before.
func TestRoutesDroppedWithoutSLB(t *testing.T) {
	e := newSwarmEnv(t, "noslb")
	hostPort, listenPort := freePort(t), freePort(t)
	e.write(map[string]string{
		"stack.yaml":   stackDocWith(true, true),
		"compose.yaml": strings.ReplaceAll(routedCompose, "HOSTPORT", fmt.Sprint(hostPort)),
		"route.yaml":   strings.NewReplacer("LISTENPORT", fmt.Sprint(listenPort), "APIPORT", "9999").Replace(routeDoc),
	})
	out, errOut, code := runCapstan(t, "diff", "--instance", e.stack, "--source", e.dir)
	if code != 0 {
		t.Fatalf("diff exited %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "2 SLB route(s) not reconciled: no SLB is configured") {
		t.Errorf("stderr lacks the warning:\n%s", errOut)
	}
	if strings.Contains(out, "slb/") {
		t.Errorf("plan mentions SLB objects:\n%s", out)
	}
}
