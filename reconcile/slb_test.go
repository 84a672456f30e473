package reconcile

import (
	"errors"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

const slbLB = "lb-1"

func slbListener(route string, port int, mod func(*resource.SLBListener)) resource.Resource {
	l := resource.SLBListener{
		LoadBalancerID: slbLB, Region: "cn-hangzhou", Protocol: "http", Port: port,
		HealthCheck:  resource.SLBHealthCheck{Enabled: true, URI: "/license.txt"},
		VServerGroup: resource.SLBMarker("capstan", route), Description: resource.SLBMarker("capstan", route),
		Status: resource.ListenerRunning, XForwardedFor: true, Gzip: true,
	}
	if mod != nil {
		mod(&l)
	}
	return resource.Resource{Key: resource.ListenerKey(slbLB, port, "http"), Stack: "web", SLBListener: &l}
}

func slbGroup(route string, backends ...resource.SLBBackend) resource.Resource {
	g := resource.VServerGroup{LoadBalancerID: slbLB, Region: "cn-hangzhou", Name: resource.SLBMarker("capstan", route), Backends: backends}
	return resource.Resource{Key: resource.VServerGroupKey(slbLB, g.Name), Stack: "web", VServerGroup: &g}
}

func slbSets(desired, live []resource.Resource) (*resource.Set, *resource.Set) {
	d, l := resource.NewSet(), resource.NewSet()
	for _, r := range desired {
		d.Resources[r.Key] = r
	}
	for _, r := range live {
		l.Resources[r.Key] = r
	}
	return d, l
}

func planSLB(desired, live []resource.Resource) (Plan, error) {
	d, l := slbSets(desired, live)
	return BuildPlan(d, l, Options{})
}

func serviceSpecForSLB() *swarm.ServiceSpec {
	return &swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "web_web", Labels: map[string]string{resource.LabelNamespace: "web"}}}
}

func changeList(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, string(c.Action)+" "+c.Key.String())
	}
	return out
}

// Live SLB objects equal to the desired ones up to SLB's defaults, transitional
// statuses and member order plan nothing.
func TestSLBEqualPlansNothing(t *testing.T) {
	b1 := resource.SLBBackend{ServerID: "i-1", Port: 30080, Weight: 100, Type: "ecs"}
	b2 := resource.SLBBackend{ServerID: "i-2", Port: 30080, Weight: 100}
	desired := []resource.Resource{slbListener("web", 80, nil), slbGroup("web", b1, b2)}
	d := slbGroup("web", b1, b2)
	d.VServerGroup.Service, d.VServerGroup.TargetPort, d.VServerGroup.PortProtocol = "web_web", 80, "tcp"
	desired[1] = d
	live := []resource.Resource{
		slbListener("web", 80, func(l *resource.SLBListener) {
			l.Bandwidth, l.Scheduler, l.IdleTimeout, l.RequestTimeout = -1, "wrr", 15, 60
			l.HealthCheck = resource.SLBHealthCheck{Enabled: true, URI: "/license.txt", HTTPCode: []string{"http_2xx"}, Interval: 2, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 3, Domain: "$_ip"}
			l.Status = resource.ListenerConfiguring
			l.VServerGroupID = "rsp-1"
		}),
		slbGroup("web", b2, b1),
	}
	plan, err := planSLB(desired, live)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Changes) != 0 {
		t.Errorf("changes: %+v", plan.Changes)
	}
}

func TestSLBUpdates(t *testing.T) {
	desired := []resource.Resource{
		slbListener("web", 80, func(l *resource.SLBListener) { l.HealthCheck.URI = "/healthz" }),
		slbGroup("web", resource.SLBBackend{ServerID: "i-1", Port: 30080, Weight: 100}, resource.SLBBackend{ServerID: "i-3", Port: 30080, Weight: 100}),
	}
	live := []resource.Resource{
		slbListener("web", 80, func(l *resource.SLBListener) { l.Status = resource.ListenerStopped }),
		slbGroup("web", resource.SLBBackend{ServerID: "i-1", Port: 30080, Weight: 50}, resource.SLBBackend{ServerID: "i-2", Port: 30080, Weight: 100}),
	}
	plan, err := planSLB(desired, live)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]FieldDiff{
		"slb/listener/lb-1:80/http": {
			{Path: "HealthCheck.URI", Before: "/license.txt", After: "/healthz"},
			{Path: "Status", Before: "stopped", After: "running"},
		},
		"slb/vservergroup/lb-1/capstan/capstan/web": {
			{Path: "Backends[i-1]", Before: "port 30080, weight 50", After: "port 30080, weight 100"},
			{Path: "Backends[i-2]", Before: "port 30080, weight 100"},
			{Path: "Backends[i-3]", After: "port 30080, weight 100"},
		},
	}
	got := map[string][]FieldDiff{}
	for _, c := range plan.Changes {
		if c.Action != Update {
			t.Errorf("%s: action %c, want update", c.Key, c.Action)
		}
		got[c.Key.String()] = c.Diff
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diffs (-want +got):\n%s", diff)
	}
}

// Groups are created before the listeners that use them, after services; listeners
// are deleted before their groups. Objects of other owners are left alone; a desired
// listener on a port another owner holds is a conflict unless adopted.
func TestSLBOrderingAndOwnership(t *testing.T) {
	svc := resource.Resource{Key: resource.ServiceKey("web_web"), Stack: "web", Service: serviceSpecForSLB()}
	desired := []resource.Resource{svc, slbListener("new", 81, nil), slbGroup("new")}
	live := []resource.Resource{
		slbListener("old", 80, nil), slbGroup("old"),
		slbListener("theirs", 82, func(l *resource.SLBListener) { l.Description = "capstan/other/theirs" }),
		slbListener("user", 83, func(l *resource.SLBListener) { l.Description = "made by hand" }),
	}
	plan, err := planSLB(desired, live)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"+ swarm/service/web_web",
		"+ slb/vservergroup/lb-1/capstan/capstan/new",
		"+ slb/listener/lb-1:81/http",
		"- slb/listener/lb-1:80/http",
		"- slb/vservergroup/lb-1/capstan/capstan/old",
	}
	if diff := cmp.Diff(want, changeList(plan)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}

	// The route now wants port 83, which a listener made by hand holds.
	desired = []resource.Resource{slbListener("new", 83, nil), slbGroup("new")}
	_, err = planSLB(desired, live)
	var ce *ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0].Key != resource.ListenerKey(slbLB, 83, "http") {
		t.Fatalf("error = %v, want a conflict on port 83", err)
	}
	d, l := slbSets(desired, live)
	plan, err = BuildPlan(d, l, Options{Adopt: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if c.Key == resource.ListenerKey(slbLB, 83, "http") {
			if c.Action != Update {
				t.Errorf("adopting: %c, want update", c.Action)
			}
			return
		}
	}
	t.Error("adopting planned no update of the listener")
}

// A created group lists its members in the plan, one line each (a port Swarm has not
// published yet is known after apply), and the service port they stand for.
func TestSLBCreateDescribesMembers(t *testing.T) {
	g := slbGroup("web", resource.SLBBackend{ServerID: "i-1", Port: 30080, Weight: 100}, resource.SLBBackend{ServerID: "i-2", Weight: 100, Type: "eni"})
	g.VServerGroup.Service, g.VServerGroup.TargetPort, g.VServerGroup.PortProtocol = "web_web", 80, "tcp"
	plan, err := planSLB([]resource.Resource{g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []FieldDiff{
		{Path: "Backends[i-1]", After: "port 30080, weight 100"},
		{Path: "Backends[i-2]", After: "port (known after apply), weight 100, type eni"},
		{Path: "LoadBalancerID", After: "lb-1"},
		{Path: "Name", After: "capstan/capstan/web"},
		{Path: "PortProtocol", After: "tcp"},
		{Path: "Region", After: "cn-hangzhou"},
		{Path: "Service", After: "web_web"},
		{Path: "TargetPort", After: "80"},
	}
	if diff := cmp.Diff(want, plan.Changes[0].Diff); diff != "" {
		t.Errorf("create diff (-want +got):\n%s", diff)
	}
}
