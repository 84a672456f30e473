package reconcile

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"
)

// convertSpec is a service as docker/cli convert (and capstan's loader) emits it for
// `image: nginx:1.25`, port 80:80, restart: always, on the stack's default network.
const convertSpec = `{"Name":"wp_web",
 "Labels":{"com.docker.stack.image":"nginx:1.25","com.docker.stack.namespace":"wp",
   "dev.capstan.managed-by":"capstan","dev.capstan.spec-hash":"h1","dev.capstan.revision":"main@sha1:1"},
 "TaskTemplate":{"ContainerSpec":{"Image":"nginx:1.25","Labels":{"com.docker.stack.namespace":"wp"},
     "Env":["A=1","DB_PASSWORD=secret"],"Privileges":{"CredentialSpec":null,"SELinuxContext":null}},
   "Resources":{},"RestartPolicy":{"Condition":"any"},"Placement":{},
   "Networks":[{"Target":"wp_default","Aliases":["web"]}],"ForceUpdate":0},
 "Mode":{"Replicated":{}},
 "EndpointSpec":{"Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":80,"PublishMode":"ingress"}]}}`

// listedSpec is the same service as ServiceList returns it from Engine 20.10 (raw,
// network IDs already mapped to names by the sink), captured with the Go client.
const listedSpec = `{"Name":"wp_web",
 "Labels":{"com.docker.stack.image":"nginx:1.25","com.docker.stack.namespace":"wp",
   "dev.capstan.managed-by":"capstan","dev.capstan.spec-hash":"h1","dev.capstan.revision":"main@sha1:0"},
 "TaskTemplate":{"ContainerSpec":{"Image":"nginx:1.25","Labels":{"com.docker.stack.namespace":"wp"},
     "Env":["A=1","DB_PASSWORD=secret"],"Privileges":{"CredentialSpec":null,"SELinuxContext":null},"Isolation":"default"},
   "Resources":{},"RestartPolicy":{"Condition":"any","MaxAttempts":0},"Placement":{},
   "Networks":[{"Target":"wp_default","Aliases":["web"]}],"ForceUpdate":0,"Runtime":"container"},
 "Mode":{"Replicated":{"Replicas":1}},
 "EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":80,"PublishMode":"ingress"}]}}`

// inspectedSpec is what `docker service inspect` shows (insertDefaults=true).
const inspectedSpec = `{"Name":"wp_web",
 "Labels":{"com.docker.stack.image":"nginx:1.25","com.docker.stack.namespace":"wp",
   "dev.capstan.managed-by":"capstan","dev.capstan.spec-hash":"h1","dev.capstan.revision":"main@sha1:0"},
 "TaskTemplate":{"ContainerSpec":{"Image":"nginx:1.25","Labels":{"com.docker.stack.namespace":"wp"},
     "Env":["A=1","DB_PASSWORD=secret"],"Privileges":{"CredentialSpec":null,"SELinuxContext":null},
     "StopGracePeriod":10000000000,"DNSConfig":{},"Isolation":"default"},
   "Resources":{},"RestartPolicy":{"Condition":"any","Delay":5000000000,"MaxAttempts":0},"Placement":{},
   "Networks":[{"Target":"wp_default","Aliases":["web"]}],"ForceUpdate":0,"Runtime":"container"},
 "Mode":{"Replicated":{"Replicas":1}},
 "UpdateConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},
 "RollbackConfig":{"Parallelism":1,"FailureAction":"pause","Monitor":5000000000,"MaxFailureRatio":0,"Order":"stop-first"},
 "EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":80,"PublishMode":"ingress"}]}}`

func spec(t *testing.T, js string, edits ...func(*swarm.ServiceSpec)) swarm.ServiceSpec {
	t.Helper()
	var s swarm.ServiceSpec
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		e(&s)
	}
	return s
}

func cs(s *swarm.ServiceSpec) *swarm.ContainerSpec { return s.TaskTemplate.ContainerSpec }

func TestDiffServiceEquivalences(t *testing.T) {
	tests := []struct {
		name          string
		desired, live func(*swarm.ServiceSpec)
	}{
		{"ServiceList shape", nil, nil},
		{"no restart policy vs insertDefaults", func(s *swarm.ServiceSpec) { s.TaskTemplate.RestartPolicy = nil }, nil},
		{"restart condition empty", func(s *swarm.ServiceSpec) { s.TaskTemplate.RestartPolicy.Condition = "" }, nil},
		{"explicit defaults in desired", func(s *swarm.ServiceSpec) {
			cs(s).StopGracePeriod = dur(10 * time.Second)
			s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1}
			s.RollbackConfig = &swarm.UpdateConfig{Parallelism: 1, Monitor: 5 * time.Second, FailureAction: "pause", Order: "stop-first"}
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: "any", Delay: dur(5 * time.Second), MaxAttempts: u64(0)}
			s.Mode.Replicated.Replicas = u64(1)
			s.EndpointSpec.Mode = "vip"
			cs(s).Isolation = "default"
		}, nil},
		{"nil vs empty structs, maps and lists", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Resources, s.TaskTemplate.Placement, cs(s).Privileges = nil, nil, nil
			cs(s).DNSConfig = &swarm.DNSConfig{}
			cs(s).Mounts, cs(s).Secrets, cs(s).Hosts = []mount.Mount{}, []*swarm.SecretReference{}, []string{}
		}, func(s *swarm.ServiceSpec) {
			cs(s).Sysctls, s.TaskTemplate.Networks[0].DriverOpts = map[string]string{}, map[string]string{}
		}},
		{"no endpoint spec vs vip", func(s *swarm.ServiceSpec) { s.EndpointSpec = nil }, func(s *swarm.ServiceSpec) { s.EndpointSpec.Ports = nil }},
		{"empty ports", func(s *swarm.ServiceSpec) { s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{}} }, func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Mode: "vip"}
		}},
		{"port defaults, case and order", func(s *swarm.ServiceSpec) {
			s.EndpointSpec.Ports = []swarm.PortConfig{{TargetPort: 80, PublishedPort: 80, Protocol: "TCP"}, {TargetPort: 53, Protocol: "udp"}}
		}, func(s *swarm.ServiceSpec) {
			s.EndpointSpec.Ports = []swarm.PortConfig{
				{TargetPort: 53, Protocol: "udp", PublishMode: "ingress"},
				{TargetPort: 80, PublishedPort: 80, Protocol: "tcp", PublishMode: "ingress"}}
		}},
		{"networks and aliases in any order", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "wp_b", Aliases: []string{"web", "www"}}, {Target: "wp_a"}}
		}, func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "wp_a"}, {Target: "wp_b", Aliases: []string{"www", "web"}}}
		}},
		{"deprecated service-level networks", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "wp_default", Aliases: []string{"web"}}}
		}, func(s *swarm.ServiceSpec) {
			s.Networks, s.TaskTemplate.Networks = s.TaskTemplate.Networks, nil
		}},
		{"image tagged by the client and pinned", func(s *swarm.ServiceSpec) { cs(s).Image = "docker.io/library/nginx" }, func(s *swarm.ServiceSpec) {
			cs(s).Image = "nginx:latest@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
			s.TaskTemplate.Placement.Platforms = []swarm.Platform{{Architecture: "amd64", OS: "linux"}, {OS: "linux"}}
		}},
		{"desired digest kept", func(s *swarm.ServiceSpec) {
			cs(s).Image = "nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
		}, func(s *swarm.ServiceSpec) {
			cs(s).Image = "nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
		}},
		{"ForceUpdate and capstan labels", nil, func(s *swarm.ServiceSpec) {
			s.TaskTemplate.ForceUpdate = 7
			s.Labels[resource.LabelRevision] = "other@sha1:2"
		}},
		{"secret and config refs by name, in any order", func(s *swarm.ServiceSpec) {
			cs(s).Secrets = []*swarm.SecretReference{
				{SecretName: "wp_b", File: &swarm.SecretReferenceFileTarget{Name: "b", UID: "0", GID: "0", Mode: 0o444}},
				{SecretName: "wp_a", File: &swarm.SecretReferenceFileTarget{Name: "a", UID: "0", GID: "0", Mode: 0o444}}}
			cs(s).Configs = []*swarm.ConfigReference{{ConfigName: "wp_c", File: &swarm.ConfigReferenceFileTarget{Name: "/c", UID: "0", GID: "0", Mode: 0o444}}}
		}, func(s *swarm.ServiceSpec) {
			cs(s).Secrets = []*swarm.SecretReference{
				{SecretID: "x1", SecretName: "wp_a", File: &swarm.SecretReferenceFileTarget{Name: "a", UID: "0", GID: "0", Mode: 0o444}},
				{SecretID: "x2", SecretName: "wp_b", File: &swarm.SecretReferenceFileTarget{Name: "b", UID: "0", GID: "0", Mode: 0o444}}}
			cs(s).Configs = []*swarm.ConfigReference{{ConfigID: "c1", ConfigName: "wp_c", File: &swarm.ConfigReferenceFileTarget{Name: "/c", UID: "0", GID: "0", Mode: 0o444}}}
		}},
		{"bind mount defaults and options Swarm drops", func(s *swarm.ServiceSpec) {
			cs(s).Mounts = []mount.Mount{
				{Type: "volume", Source: "wp_data", Target: "/data"},
				{Type: "bind", Source: "/srv", Target: "/srv", Consistency: "cached", BindOptions: &mount.BindOptions{CreateMountpoint: true}}}
		}, func(s *swarm.ServiceSpec) {
			cs(s).Mounts = []mount.Mount{
				{Type: "bind", Source: "/srv", Target: "/srv", BindOptions: &mount.BindOptions{Propagation: "rprivate"}},
				{Type: "volume", Source: "wp_data", Target: "/data", VolumeOptions: &mount.VolumeOptions{}}}
		}},
		{"fields Engine 20.10 does not store", func(s *swarm.ServiceSpec) {
			cs(s).Healthcheck = &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second, StartInterval: 5 * time.Second}
			cs(s).OomScoreAdj = 100
		}, func(s *swarm.ServiceSpec) {
			cs(s).Healthcheck = &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second}
		}},
		{"replicated job defaults", func(s *swarm.ServiceSpec) {
			s.Mode = swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{}}
		}, func(s *swarm.ServiceSpec) {
			s.Mode = swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: u64(1), TotalCompletions: u64(1)}}
		}},
		{"no mode at all", func(s *swarm.ServiceSpec) { s.Mode = swarm.ServiceMode{} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, shape := range []string{listedSpec, inspectedSpec} {
				d := spec(t, convertSpec, opt(tt.desired))
				l := spec(t, shape, opt(tt.live))
				if diffs := DiffService(d, l); len(diffs) > 0 {
					t.Errorf("false difference: %+v", diffs)
				}
			}
		})
	}
}

func opt(f func(*swarm.ServiceSpec)) func(*swarm.ServiceSpec) {
	if f == nil {
		return func(*swarm.ServiceSpec) {}
	}
	return f
}

func TestDiffServiceDifferences(t *testing.T) {
	tests := []struct {
		name          string
		desired, live func(*swarm.ServiceSpec)
		want          []FieldDiff
	}{
		{"replicas", func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = u64(3) }, nil,
			[]FieldDiff{{Path: "Mode.Replicated.Replicas", Before: "1", After: "3"}}},
		{"scaled to zero", func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = u64(0) }, nil,
			[]FieldDiff{{Path: "Mode.Replicated.Replicas", Before: "1", After: "0"}}},
		{"env value", func(s *swarm.ServiceSpec) { cs(s).Env = []string{"A=2", "DB_PASSWORD=secret"} }, nil,
			[]FieldDiff{{Path: "TaskTemplate.ContainerSpec.Env[A]", Before: "1", After: "2"}}},
		{"secret-looking env is masked", func(s *swarm.ServiceSpec) { cs(s).Env = []string{"A=1", "DB_PASSWORD=new"} }, nil,
			[]FieldDiff{{Path: "TaskTemplate.ContainerSpec.Env[DB_PASSWORD]", Before: Masked, After: Masked}}},
		{"env added and removed", func(s *swarm.ServiceSpec) { cs(s).Env = []string{"B", "api_token=t"} }, nil,
			[]FieldDiff{
				{Path: "TaskTemplate.ContainerSpec.Env[A]", Before: "1"},
				{Path: "TaskTemplate.ContainerSpec.Env[B]", After: "(unset)"},
				{Path: "TaskTemplate.ContainerSpec.Env[DB_PASSWORD]", Before: Masked},
				{Path: "TaskTemplate.ContainerSpec.Env[api_token]", After: Masked}}},
		{"image tag", func(s *swarm.ServiceSpec) { cs(s).Image = "nginx:1.27" }, nil,
			[]FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image", Before: "nginx:1.25", After: "nginx:1.27"}}},
		{"pinned digest moved", func(s *swarm.ServiceSpec) { cs(s).Image = "nginx:1.25@sha256:" + sha('a') }, func(s *swarm.ServiceSpec) {
			cs(s).Image = "nginx:1.25@sha256:" + sha('b')
		}, []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Image", Before: "nginx:1.25@sha256:" + sha('b'), After: "nginx:1.25@sha256:" + sha('a')}}},
		{"platforms the source sets", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Placement.Platforms = []swarm.Platform{{OS: "linux", Architecture: "arm64"}}
		},
			func(s *swarm.ServiceSpec) {
				s.TaskTemplate.Placement.Platforms = []swarm.Platform{{OS: "linux", Architecture: "amd64"}}
			},
			[]FieldDiff{{Path: "TaskTemplate.Placement.Platforms", Before: `[{"Architecture":"amd64","OS":"linux"}]`, After: `[{"Architecture":"arm64","OS":"linux"}]`}}},
		{"restart condition", func(s *swarm.ServiceSpec) { s.TaskTemplate.RestartPolicy.Condition = "none" }, nil,
			[]FieldDiff{{Path: "TaskTemplate.RestartPolicy.Condition", Before: "any", After: "none"}}},
		{"explicit zero restart delay is not the default", func(s *swarm.ServiceSpec) { s.TaskTemplate.RestartPolicy.Delay = dur(0) }, nil,
			[]FieldDiff{{Path: "TaskTemplate.RestartPolicy.Delay", Before: "5s", After: "0"}}},
		{"stop grace period", func(s *swarm.ServiceSpec) { cs(s).StopGracePeriod = dur(time.Second) }, nil,
			[]FieldDiff{{Path: "TaskTemplate.ContainerSpec.StopGracePeriod", Before: "10s", After: "1s"}}},
		{"update parallelism 0 is not the default 1", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{} }, nil,
			[]FieldDiff{{Path: "UpdateConfig.Parallelism", Before: "1", After: "0"}}},
		{"published port", func(s *swarm.ServiceSpec) { s.EndpointSpec.Ports[0].PublishedPort = 8080 }, nil,
			[]FieldDiff{{Path: "EndpointSpec.Ports[80/tcp].PublishedPort", Before: "80", After: "8080"}}},
		{"network attached", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: "proxy"})
		}, nil, []FieldDiff{{Path: "TaskTemplate.Networks[proxy].Target", After: "proxy"}}},
		{"service label", func(s *swarm.ServiceSpec) { s.Labels["traefik.enable"] = "true" }, nil,
			[]FieldDiff{{Path: "Labels[traefik.enable]", After: "true"}}},
		{"secret file mode", func(s *swarm.ServiceSpec) {
			cs(s).Secrets = []*swarm.SecretReference{{SecretName: "wp_pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o400}}}
		}, func(s *swarm.ServiceSpec) {
			cs(s).Secrets = []*swarm.SecretReference{{SecretID: "s1", SecretName: "wp_pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o444}}}
		}, []FieldDiff{{Path: "TaskTemplate.ContainerSpec.Secrets[pw].File.Mode", Before: "0444", After: "0400"}}},
		{"mode", func(s *swarm.ServiceSpec) { s.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}} }, nil,
			[]FieldDiff{{Path: "Mode", Before: "replicated", After: "global"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := spec(t, convertSpec, opt(tt.desired))
			l := spec(t, listedSpec, opt(tt.live))
			if diff := cmp.Diff(tt.want, DiffService(d, l)); diff != "" {
				t.Errorf("diff (-want +got):\n%s", diff)
			}
		})
	}
}

func sha(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestNormalizeServiceDoesNotModifyItsInput(t *testing.T) {
	in := spec(t, convertSpec, func(s *swarm.ServiceSpec) {
		s.EndpointSpec.Ports = []swarm.PortConfig{{TargetPort: 90}, {TargetPort: 80}}
		cs(s).Secrets = []*swarm.SecretReference{{SecretID: "x", SecretName: "b"}, {SecretName: "a"}}
	})
	before := spec(t, convertSpec, func(s *swarm.ServiceSpec) {
		s.EndpointSpec.Ports = []swarm.PortConfig{{TargetPort: 90}, {TargetPort: 80}}
		cs(s).Secrets = []*swarm.SecretReference{{SecretID: "x", SecretName: "b"}, {SecretName: "a"}}
	})
	NormalizeService(in)
	if diff := cmp.Diff(before, in); diff != "" {
		t.Errorf("input modified (-before +after):\n%s", diff)
	}
}

func TestNormalizeImage(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":                              "nginx:latest",
		"nginx:1.25":                         "nginx:1.25",
		"docker.io/library/nginx:1.25":       "nginx:1.25",
		"docker.io/team/app":                 "team/app:latest",
		"registry.example.com:5000/team/api": "registry.example.com:5000/team/api:latest",
		"nginx@sha256:" + sha('a'):           "nginx@sha256:" + sha('a'),
		"Not A Reference":                    "Not A Reference",
	} {
		if got := NormalizeImage(in); got != want {
			t.Errorf("NormalizeImage(%q) = %q, want %q", in, got, want)
		}
	}
	if got := stripDigest("nginx:1.25@sha256:" + sha('a')); got != "nginx:1.25" {
		t.Errorf("stripDigest = %q", got)
	}
	if got := stripDigest("nginx@sha256:" + sha('a')); got != "nginx:latest" {
		t.Errorf("stripDigest of an untagged pin = %q, want the client's default tag", got)
	}
}

// listedNetwork is a stack network as the swarm sink lists it from Engine 20.10: the
// allocator picked the subnet and gateway and added the VXLAN option.
func listedNetwork() network.CreateOptions {
	return network.CreateOptions{Driver: "overlay", Scope: "swarm",
		IPAM:    &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.1"}}},
		Options: map[string]string{"com.docker.network.driver.overlay.vxlanid_list": "4097"},
		Labels:  map[string]string{resource.LabelNamespace: "wp", resource.LabelManagedBy: "capstan", resource.LabelSpecHash: "h"}}
}

func TestDiffNetwork(t *testing.T) {
	tests := []struct {
		name    string
		desired network.CreateOptions
		live    func(*network.CreateOptions)
		want    []FieldDiff
	}{
		{"convert default network", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp"}}, nil, nil},
		{"declared subnet, allocator gateway", network.CreateOptions{Driver: "overlay", Labels: map[string]string{resource.LabelNamespace: "wp"},
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24"}}}}, nil, nil},
		{"declared subnet differs", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp"},
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.9.0.0/16"}}}}, nil,
			[]FieldDiff{{Path: "IPAM.Config", Before: `[{"Subnet":"10.0.1.0/24"}]`, After: `[{"Subnet":"10.9.0.0/16"}]`}}},
		{"declared gateway differs", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp"},
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.254"}}}}, nil,
			[]FieldDiff{{Path: "IPAM.Config", Before: `[{"Subnet":"10.0.1.0/24","Gateway":"10.0.1.1"}]`, After: `[{"Subnet":"10.0.1.0/24","Gateway":"10.0.1.254"}]`}}},
		{"driver options", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp"}, Options: map[string]string{"encrypted": "true"}}, nil,
			[]FieldDiff{{Path: "Options[encrypted]", After: "true"}}},
		{"internal and attachable", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp"}, Internal: true},
			func(n *network.CreateOptions) { n.Attachable = true },
			[]FieldDiff{{Path: "Attachable", Before: "true", After: "false"}, {Path: "Internal", Before: "false", After: "true"}}},
		{"labels", network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wp", "team": "a"}}, nil,
			[]FieldDiff{{Path: "Labels[team]", After: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := listedNetwork()
			if tt.live != nil {
				tt.live(&l)
			}
			if diff := cmp.Diff(tt.want, DiffNetwork(tt.desired, l)); diff != "" {
				t.Errorf("diff (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLooksSecret(t *testing.T) {
	for key, want := range map[string]bool{
		"DB_PASSWORD": true, "mysql_root_password": true, "API_TOKEN": true, "SecretKey": true,
		"aws_access_key_id": true, "client_secret": true, "PATH": false, "com.docker.stack.image": false, "LOG_LEVEL": false,
	} {
		if got := LooksSecret(key); got != want {
			t.Errorf("LooksSecret(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestEqualSpecs(t *testing.T) {
	one, two := uint64(1), uint64(2)
	base := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: "s", Labels: map[string]string{"a": "1"}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Env: []string{"A=1"}}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}
	emptyPorts := base
	emptyPorts.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{}}
	nilPorts := base
	nilPorts.EndpointSpec = &swarm.EndpointSpec{}
	otherReplicas := base
	otherReplicas.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &two}}
	otherEnv := base
	otherEnv.TaskTemplate = swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Env: []string{"A=2"}}}
	otherLabel := base
	otherLabel.Labels = map[string]string{"a": "2"}
	for _, tc := range []struct {
		name string
		a, b swarm.ServiceSpec
		want bool
	}{
		{"same", base, base, true},
		{"nil and empty slices", emptyPorts, nilPorts, true},
		{"replicas differ", base, otherReplicas, false},
		{"env differs", base, otherEnv, false},
		{"label differs", base, otherLabel, false},
		{"endpoint nil vs set", base, nilPorts, false},
	} {
		if got := equalSpecs(reflect.ValueOf(tc.a), reflect.ValueOf(tc.b)); got != tc.want {
			t.Errorf("%s: equalSpecs = %v, want %v", tc.name, got, tc.want)
		}
	}
}
