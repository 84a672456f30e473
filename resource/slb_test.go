package resource

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSLBMarker(t *testing.T) {
	m := SLBMarker("prod", "wordpress-http")
	if m != "capstan/prod/wordpress-http" {
		t.Fatalf("marker %q", m)
	}
	inst, route, ok := ParseSLBMarker(m)
	if !ok || inst != "prod" || route != "wordpress-http" {
		t.Errorf("ParseSLBMarker(%q) = %q, %q, %v", m, inst, route, ok)
	}
	for _, s := range []string{"", "capstan", "capstan/", "capstan/prod", "capstan/prod/", "capstan//r", "capstan/prod/a/b",
		"k8s/80/svc/ns/cluster", "Capstan/prod/r", "my listener"} {
		if _, _, ok := ParseSLBMarker(s); ok {
			t.Errorf("ParseSLBMarker(%q) accepted it", s)
		}
	}
}

func TestOwnerOfSLBObjects(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Resource
		want string
	}{
		{"listener", Resource{SLBListener: &SLBListener{Description: "capstan/prod/web"}}, "prod"},
		{"user listener", Resource{SLBListener: &SLBListener{Description: "made by hand"}}, ""},
		{"group", Resource{VServerGroup: &VServerGroup{Name: "capstan/capstan/web"}}, "capstan"},
		{"user group", Resource{VServerGroup: &VServerGroup{Name: "web-servers"}}, ""},
		{"ManagedBy wins", Resource{ManagedBy: "x", SLBListener: &SLBListener{Description: "capstan/prod/web"}}, "x"},
	} {
		if got := tc.r.Owner(); got != tc.want {
			t.Errorf("%s: Owner() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestListenerNormalized(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   SLBListener
		want SLBListener
	}{
		{
			name: "http defaults",
			in:   SLBListener{Protocol: "HTTP", HealthCheck: SLBHealthCheck{Enabled: true, HTTPCode: []string{"http_3xx", "http_2xx", "http_3xx"}, Domain: "$_ip"}, Status: "starting"},
			want: SLBListener{Protocol: "http", Bandwidth: -1, Scheduler: "wrr", IdleTimeout: 15, RequestTimeout: 60, Status: "running",
				HealthCheck: SLBHealthCheck{Enabled: true, URI: "/", HTTPCode: []string{"http_2xx", "http_3xx"}, Interval: 2, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 3}},
		},
		{
			name: "switched-off settings are forgotten",
			in: SLBListener{Protocol: "http", Bandwidth: 10, Scheduler: "rr", IdleTimeout: 3, RequestTimeout: 4, Status: "stopping",
				HealthCheck:   SLBHealthCheck{URI: "/x", Interval: 9},
				StickySession: SLBStickySession{Type: "insert", Timeout: 5},
				ACL:           SLBACL{ID: "acl-1", Type: "white"}},
			want: SLBListener{Protocol: "http", Bandwidth: 10, Scheduler: "rr", IdleTimeout: 3, RequestTimeout: 4, Status: "stopped"},
		},
		{
			name: "layer 7 settings do not apply to tcp",
			in: SLBListener{Protocol: "tcp", XForwardedFor: true, Gzip: true, IdleTimeout: 3, CertificateID: "c",
				HealthCheck:   SLBHealthCheck{Enabled: true, URI: "/", HTTPCode: []string{"http_2xx"}, ConnectPort: -520},
				StickySession: SLBStickySession{Enabled: true, Type: "insert", Timeout: 5}},
			want: SLBListener{Protocol: "tcp", Bandwidth: -1, Scheduler: "wrr",
				HealthCheck: SLBHealthCheck{Enabled: true, Interval: 2, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 3}},
		},
		{
			name: "sticky session by type",
			in:   SLBListener{Protocol: "https", CertificateID: "c", StickySession: SLBStickySession{Enabled: true, Type: "server", Cookie: "S", Timeout: 9}},
			want: SLBListener{Protocol: "https", CertificateID: "c", Bandwidth: -1, Scheduler: "wrr", IdleTimeout: 15, RequestTimeout: 60,
				StickySession: SLBStickySession{Enabled: true, Type: "server", Cookie: "S"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.Normalized()); diff != "" {
				t.Errorf("Normalized (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGroupNormalizedAndHash(t *testing.T) {
	a := VServerGroup{Name: "g", Backends: []SLBBackend{{ServerID: "i-2", Port: 1, Weight: 100}, {ServerID: "i-1", Port: 1, Weight: 100, Type: "ecs"}}}
	b := VServerGroup{Name: "g", Backends: []SLBBackend{{ServerID: "i-1", Port: 1, Weight: 100}, {ServerID: "i-2", Port: 1, Weight: 100, Type: "ecs"}}}
	if diff := cmp.Diff(a.Normalized(), b.Normalized()); diff != "" {
		t.Errorf("member order or implicit type matters (-a +b):\n%s", diff)
	}
	if SpecHash(Resource{VServerGroup: &a}) != SpecHash(Resource{VServerGroup: &b}) {
		t.Error("equal groups hash differently")
	}
	b.Backends[0].Weight = 50
	if SpecHash(Resource{VServerGroup: &a}) == SpecHash(Resource{VServerGroup: &b}) {
		t.Error("a weight change does not change the hash")
	}
	if a.Backends[0].ServerID != "i-2" {
		t.Error("Normalized changed its receiver's members")
	}
	l1 := SLBListener{Protocol: "http", VServerGroupID: "rsp-1"}
	l2 := SLBListener{Protocol: "http", Bandwidth: -1, Scheduler: "wrr"}
	if SpecHash(Resource{SLBListener: &l1}) != SpecHash(Resource{SLBListener: &l2}) {
		t.Error("listeners equal up to defaults and the live group ID hash differently")
	}
}

func TestSLBKeys(t *testing.T) {
	for _, k := range []Key{ListenerKey("lb-1", 8080, "http"), VServerGroupKey("lb-1", "capstan/capstan/web")} {
		back, err := ParseKey(k.String())
		if err != nil || back != k {
			t.Errorf("ParseKey(%q) = %v, %v", k, back, err)
		}
	}
	if got := ListenerKey("lb-1", 8080, "http").String(); got != "slb/listener/lb-1:8080/http" {
		t.Errorf("listener key %q", got)
	}
	if got := VServerGroupKey("lb-1", "capstan/capstan/web").String(); got != "slb/vservergroup/lb-1/capstan/capstan/web" {
		t.Errorf("group key %q", got)
	}
}
