package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/resource"
)

// composeTree writes files (slash paths relative to a fresh source root) and returns the
// root.
func composeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// loadComposeTree loads the named files of a tree written by composeTree.
func loadComposeTree(t testing.TB, stack string, env map[string]string, files map[string]string, order ...string) ([]resource.Resource, Problems) {
	t.Helper()
	root := composeTree(t, files)
	var abs []string
	for _, f := range order {
		abs = append(abs, filepath.Join(root, filepath.FromSlash(f)))
	}
	return loadCompose(composeInput{Stack: stack, Root: root, Files: abs, Env: env})
}

func findResource(t testing.TB, res []resource.Resource, key resource.Key) resource.Resource {
	t.Helper()
	for _, r := range res {
		if r.Key == key {
			return r
		}
	}
	var keys []string
	for _, r := range res {
		keys = append(keys, r.Key.String())
	}
	t.Fatalf("no resource %s; have %s", key, strings.Join(keys, ", "))
	return resource.Resource{}
}

func u64(v uint64) *uint64 { return &v }

// TestLoadComposeV2Mapping covers the Compose v2 keys capstan maps onto Swarm settings.
func TestLoadComposeV2Mapping(t *testing.T) {
	tests := []struct {
		name    string
		service string // YAML of one service "app" in a version '2' file, indented 4
		check   func(t *testing.T, s *swarm.ServiceSpec)
		probs   Problems
	}{
		{
			name:    "restart always is any",
			service: "    restart: always\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
				if diff := cmp.Diff(want, s.TaskTemplate.RestartPolicy); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "restart unless-stopped is any",
			service: "    restart: unless-stopped\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				if got := s.TaskTemplate.RestartPolicy; got == nil || got.Condition != swarm.RestartPolicyConditionAny {
					t.Errorf("RestartPolicy = %+v, want condition any", got)
				}
			},
		},
		{
			name:    "restart on-failure with a count",
			service: "    restart: on-failure:5\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: u64(5)}
				if diff := cmp.Diff(want, s.TaskTemplate.RestartPolicy); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "restart no keeps Swarm's default, with a warning",
			service: "    restart: \"no\"\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				if s.TaskTemplate.RestartPolicy != nil {
					t.Errorf("RestartPolicy = %+v, want nil", s.TaskTemplate.RestartPolicy)
				}
			},
			probs: Problems{{File: "docker-compose.yml", Line: 5, Severity: Warning,
				Message: `service "app": restart "no" keeps Swarm's default restart policy (restart on any exit); set deploy.restart_policy.condition: none to stop restarts`}},
		},
		{
			name:    "memory, cpus and pids become limits and reservations",
			service: "    mem_limit: 512m\n    mem_reservation: 128m\n    cpus: 1.5\n    pids_limit: 200\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := &swarm.ResourceRequirements{
					Limits:       &swarm.Limit{NanoCPUs: 1_500_000_000, MemoryBytes: 512 << 20, Pids: 200},
					Reservations: &swarm.Resources{MemoryBytes: 128 << 20},
				}
				if diff := cmp.Diff(want, s.TaskTemplate.Resources); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "cpus as a string",
			service: "    cpus: \"0.25\"\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				if got := s.TaskTemplate.Resources.Limits.NanoCPUs; got != 250_000_000 {
					t.Errorf("NanoCPUs = %d, want 250000000", got)
				}
			},
		},
		{
			name:    "scale is replicas",
			service: "    scale: 3\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: u64(3)}}
				if diff := cmp.Diff(want, s.Mode); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "network_mode host joins the host network",
			service: "    network_mode: host\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := []swarm.NetworkAttachmentConfig{{Target: "host"}}
				if diff := cmp.Diff(want, s.TaskTemplate.Networks); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "network_mode bridge joins the default network, with a warning",
			service: "    network_mode: bridge\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := []swarm.NetworkAttachmentConfig{{Target: "v2_default", Aliases: []string{"app"}}}
				if diff := cmp.Diff(want, s.TaskTemplate.Networks); diff != "" {
					t.Error(diff)
				}
			},
			probs: Problems{{File: "docker-compose.yml", Line: 5, Severity: Warning,
				Message: `service "app": network_mode "bridge" is ignored: Swarm services cannot join the bridge network, so the service joins the stack's default network`}},
		},
		{
			name:    "v2 keys and deploy.resources combine",
			service: "    mem_limit: 1g\n    deploy:\n      resources:\n        reservations:\n          cpus: \"2\"\n",
			check: func(t *testing.T, s *swarm.ServiceSpec) {
				want := &swarm.ResourceRequirements{
					Limits:       &swarm.Limit{MemoryBytes: 1 << 30},
					Reservations: &swarm.Resources{NanoCPUs: 2_000_000_000},
				}
				if diff := cmp.Diff(want, s.TaskTemplate.Resources); diff != "" {
					t.Error(diff)
				}
			},
		},
		{
			name:    "cpu_shares is ignored with a hint",
			service: "    cpu_shares: 512\n",
			check:   func(t *testing.T, s *swarm.ServiceSpec) {},
			probs: Problems{{File: "docker-compose.yml", Line: 5, Severity: Warning,
				Message: `service "app": cpu_shares is ignored: Swarm has no CPU shares; use cpus or deploy.resources`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "version: '2'\nservices:\n  app:\n    image: busybox\n" + tt.service
			res, probs := loadComposeTree(t, "v2", nil, map[string]string{"docker-compose.yml": file}, "docker-compose.yml")
			if diff := cmp.Diff(tt.probs, probs); diff != "" {
				t.Fatalf("problems (-want +got):\n%s", diff)
			}
			tt.check(t, findResource(t, res, resource.ServiceKey("v2_app")).Service)
		})
	}
}

// TestLoadComposeWordpressV2 is the original scenario: a version '2' file with restart:
// always, deployed as stack wordpress.
func TestLoadComposeWordpressV2(t *testing.T) {
	file := `version: '2'
services:
  wordpress:
    image: wordpress:4.5.3
    environment:
      - WORDPRESS_DB_PASSWORD=password
    ports:
      - "80"
    restart: always
  mysql:
    image: mysql:5.7.13
    environment:
      - MYSQL_ROOT_PASSWORD=password
    restart: always
`
	res, probs := loadComposeTree(t, "wordpress", nil, map[string]string{"docker-compose.yml": file}, "docker-compose.yml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	got := findResource(t, res, resource.ServiceKey("wordpress_wordpress"))
	want := resource.Resource{
		Key:    resource.ServiceKey("wordpress_wordpress"),
		Stack:  "wordpress",
		Source: "docker-compose.yml:3",
		Service: &swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: "wordpress_wordpress", Labels: map[string]string{
				resource.LabelImage: "wordpress:4.5.3", resource.LabelNamespace: "wordpress"}},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{
					Image:      "wordpress:4.5.3",
					Labels:     map[string]string{resource.LabelNamespace: "wordpress"},
					Env:        []string{"WORDPRESS_DB_PASSWORD=password"},
					Hosts:      []string{},
					Mounts:     []mount.Mount{},
					Privileges: &swarm.Privileges{},
					Secrets:    []*swarm.SecretReference{},
					Configs:    []*swarm.ConfigReference{},
					Ulimits:    []*container.Ulimit{},
				},
				Resources:     &swarm.ResourceRequirements{},
				RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
				Placement:     &swarm.Placement{Preferences: []swarm.PlacementPreference{}},
				Networks:      []swarm.NetworkAttachmentConfig{{Target: "wordpress_default", Aliases: []string{"wordpress"}}},
			},
			Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{}},
			EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{
				{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 80, PublishMode: swarm.PortConfigPublishModeIngress}}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("wordpress service (-want +got):\n%s", diff)
	}
	net := findResource(t, res, resource.NetworkKey("wordpress_default"))
	if diff := cmp.Diff(&network.CreateOptions{Labels: map[string]string{resource.LabelNamespace: "wordpress"}}, net.Network); diff != "" {
		t.Errorf("default network (-want +got):\n%s", diff)
	}
}

// TestLoadComposeKeyPolicy checks the exact problem for each key Swarm cannot honour.
func TestLoadComposeKeyPolicy(t *testing.T) {
	warn := func(line int, msg string) Problem {
		return Problem{File: "compose.yaml", Line: line, Severity: Warning, Message: msg}
	}
	fail := func(line int, msg string) Problem {
		return Problem{File: "compose.yaml", Line: line, Severity: Error, Message: msg}
	}
	tests := []struct {
		name  string
		extra string // YAML appended to service "web" (indent 4); line 4 is its first line
		top   string // YAML appended at the top level
		want  Problems
	}{
		{name: "privileged", extra: "    privileged: true\n",
			want: Problems{warn(4, `service "web": privileged is ignored: Swarm services cannot run privileged; grant what the service needs with cap_add`)}},
		{name: "privileged false is harmless", extra: "    privileged: false\n"},
		{name: "volumes_from", extra: "    volumes_from: [db]\n", top: "  db:\n    image: busybox\n",
			want: Problems{fail(4, `service "web": volumes_from is not supported: Swarm services cannot mount another container's volumes; declare a named volume under the top-level volumes key and mount it in each service that shares it`)}},
		{name: "network_mode service", extra: "    network_mode: \"service:db\"\n", top: "  db:\n    image: busybox\n",
			want: Problems{fail(4, `service "web": network_mode "service:db" is not supported: Swarm services cannot share another container's network stack; put both services on one network and talk over it`)}},
		{name: "network_mode container", extra: "    network_mode: \"container:abc\"\n",
			want: Problems{fail(4, `service "web": network_mode "container:abc" is not supported: Swarm services cannot share another container's network stack; put both services on one network and talk over it`)}},
		{name: "build next to image", extra: "    build: .\n",
			want: Problems{warn(4, `service "web": build is ignored: capstan deploys images, it does not build them`)}},
		{name: "links", extra: "    links: [db]\n", top: "  db:\n    image: busybox\n",
			want: Problems{warn(4, `service "web": links is ignored: services on a shared network reach each other by service name; use network aliases for other names`)}},
		{name: "devices", extra: "    devices: [\"/dev/fuse:/dev/fuse\"]\n",
			want: Problems{warn(4, `service "web": devices is ignored: Swarm services cannot map host devices`)}},
		{name: "ipc host", extra: "    ipc: host\n",
			want: Problems{warn(4, `service "web": ipc is ignored: Swarm services always get their own IPC namespace`)}},
		{name: "pid of another service", extra: "    pid: \"service:db\"\n", top: "  db:\n    image: busybox\n",
			want: Problems{fail(4, `service "web": pid: service:db is not supported: Swarm services cannot share another container's namespace`)}},
		{name: "depends_on", extra: "    depends_on: [db]\n", top: "  db:\n    image: busybox\n",
			want: Problems{warn(4, `service "web": depends_on is ignored: Swarm starts services in any order; let the service retry until its dependencies answer`)}},
		{name: "container_name", extra: "    container_name: web1\n",
			want: Problems{warn(4, `service "web": container_name is ignored: Swarm names each task <stack>_<service>.<slot>.<task id>`)}},
		{name: "security_opt", extra: "    security_opt: [\"no-new-privileges:true\"]\n",
			want: Problems{warn(4, `service "web": security_opt is ignored: Swarm services do not support it`)}},
		{name: "tmpfs", extra: "    tmpfs: /run\n",
			want: Problems{warn(4, `service "web": tmpfs is ignored: docker stack deploy ignores it too; mount a volume of type tmpfs instead`)}},
		{name: "port host address", extra: "    ports: [\"127.0.0.1:8080:80\", \"127.0.0.1:8443:443\"]\n",
			want: Problems{warn(4, `service "web": ports[].host_ip is ignored: Swarm publishes a port on every address of every node`)}},
		{name: "unspecified port host address is what Swarm does", extra: "    ports: [\"0.0.0.0:8080:80\"]\n"},
		{name: "network static address", extra: "    networks:\n      back:\n        ipv4_address: 10.0.0.5\n", top: "networks:\n  back:\n",
			want: Problems{warn(6, `service "web": networks.back.ipv4_address is ignored: Swarm assigns task addresses itself`)}},
		{name: "device reservations", extra: "    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu]\n",
			want: Problems{warn(7, `service "web": deploy.resources.reservations.devices is ignored: Swarm cannot reserve devices; use generic_resources`)}},
		{name: "profiles skip the service", extra: "    profiles: [debug]\n",
			want: Problems{warn(2, `service "web" is skipped: it has profiles [debug] and capstan activates no profiles; remove profiles to deploy it`)}},
		{name: "restart with deploy.restart_policy", extra: "    restart: always\n    deploy:\n      restart_policy:\n        condition: none\n",
			want: Problems{warn(4, `service "web": restart is ignored: deploy.restart_policy is set`)}},
		{name: "published port used twice", extra: "    ports: [\"8080:80\", \"8080:81\"]\n",
			want: Problems{fail(4, `service "web": published port 8080/tcp is used twice (ingress mode); each published port can map to one target port`)}},
		{name: "no image", extra: "    build: .\n", top: "  noimage:\n    build: ./app\n",
			want: Problems{
				warn(4, `service "web": build is ignored: capstan deploys images, it does not build them`),
				warn(6, `service "noimage": build is ignored: capstan deploys images, it does not build them`),
				fail(6, `service "noimage": no image is set; capstan deploys images and does not build them, so push the image and set image:`),
			}},
		{name: "bad image reference", top: "  bad:\n    image: \"UPPER/Case:tag\"\n",
			want: Problems{fail(5, `service "bad": invalid image reference "UPPER/Case:tag": invalid reference format: repository name (Case) must be lowercase`)}},
		{name: "name differs from the stack", top: "name: other\n",
			want: Problems{warn(4, `name "other" is ignored: the stack is named "policy" by its Stack document`)}},
		{name: "include", top: "include:\n  - other.yaml\n",
			want: Problems{fail(4, `include is not supported: list every file in the Stack document's spec.compose instead, so capstan can check it stays inside the source tree`)}},
		{name: "an attribute without a rule", extra: "    runtime: runsc\n",
			want: Problems{warn(4, `service "web": runtime is ignored: Swarm services do not support it`)}},
		{name: "jobs", top: "jobs:\n  migrate:\n    image: example/migrate\n    triggers:\n      manual: true\n",
			want: Problems{fail(4, `jobs is not supported: declare a service with deploy.mode: replicated-job or global-job instead`)}},
		{name: "network enable_ipv4", top: "networks:\n  default:\n    enable_ipv4: false\n",
			want: nil}, // false is the harmless empty value
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// top either continues the services mapping (indented) or adds top-level keys.
			file := "services:\n  web:\n    image: nginx\n" + tt.extra + tt.top
			_, probs := loadComposeTree(t, "policy", nil, map[string]string{"compose.yaml": file}, "compose.yaml")
			if diff := cmp.Diff(tt.want, probs); diff != "" {
				t.Errorf("problems (-want +got):\n%s\nfile:\n%s", diff, file)
			}
		})
	}
}

// TestLoadComposeErrors covers load errors: each is reported at its file and line, all
// of them at once, and nothing is returned.
func TestLoadComposeErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		order []string
		env   map[string]string
		want  Problems
	}{
		{
			name:  "YAML syntax",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n   bad: [\n"},
			want:  Problems{{File: "c.yml", Line: 4, Severity: Error, Message: "YAML syntax: did not find expected key"}},
		},
		{
			name:  "duplicate keys",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    image: httpd\n"},
			want:  Problems{{File: "c.yml", Line: 4, Severity: Error, Message: "services.web.image is defined twice (first at line 3)"}},
		},
		{
			name:  "not a mapping",
			files: map[string]string{"c.yml": "- just\n- a list\n"},
			want:  Problems{{File: "c.yml", Line: 1, Severity: Error, Message: "a compose file must be a mapping with a services key at the top level"}},
		},
		{
			name:  "empty file",
			files: map[string]string{"c.yml": ""},
			want:  Problems{{File: "c.yml", Severity: Error, Message: "the compose file is empty"}},
		},
		{
			name:  "unknown attribute",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    imagee: typo\n"},
			want:  Problems{{File: "c.yml", Line: 4, Severity: Error, Message: `services.web: unknown attribute "imagee"; check its spelling against the Compose Specification`}},
		},
		{
			name:  "wrong type",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: many\n"},
			want:  Problems{{File: "c.yml", Line: 5, Severity: Error, Message: `services.web.deploy.replicas: "many" is not an integer`}},
		},
		{
			name: "required variables, all reported",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: \"nginx:${TAG:?set TAG to the release}\"\n" +
				"    environment:\n      DB: ${DB_HOST:?}\n"},
			want: Problems{
				{File: "c.yml", Line: 3, Severity: Error, Message: "services.web.image: required variable TAG is missing a value: set TAG to the release; set it in the Stack document's spec.variables or an envFile"},
				{File: "c.yml", Line: 5, Severity: Error, Message: "services.web.environment.DB: required variable DB_HOST is missing a value; set it in the Stack document's spec.variables or an envFile"},
			},
		},
		{
			name: "every schema violation of a file",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    labels: 5\n    stop_grace_period: 10\n" +
				"    ports:\n      - target: 80\n        published: [8080]\n  worker:\n    image: w\n    imagee: typo\n    deploy:\n      mode: replicated\n      endpoint_mode: [vip]\n"},
			want: Problems{
				{File: "c.yml", Line: 4, Severity: Error, Message: "services.web.labels must be a list or a mapping"},
				{File: "c.yml", Line: 5, Severity: Error, Message: "services.web.stop_grace_period must be a string"},
				{File: "c.yml", Line: 8, Severity: Error, Message: "services.web.ports.0.published must be an integer or a string"},
				{File: "c.yml", Line: 11, Severity: Error, Message: `services.worker: unknown attribute "imagee"; check its spelling against the Compose Specification`},
				{File: "c.yml", Line: 14, Severity: Error, Message: "services.worker.deploy.endpoint_mode must be a string"},
			},
		},
		{
			name: "violations in two files",
			files: map[string]string{
				"c.yml": "services:\n  web:\n    image: nginx\n    imagee: typo\n",
				"o.yml": "services:\n  web:\n    stop_grace_period: 10\n    deploy:\n      replicas: ${N}\n",
			},
			order: []string{"c.yml", "o.yml"},
			env:   map[string]string{"N": "two"},
			want: Problems{
				{File: "c.yml", Line: 4, Severity: Error, Message: `services.web: unknown attribute "imagee"; check its spelling against the Compose Specification`},
				{File: "o.yml", Line: 3, Severity: Error, Message: "services.web.stop_grace_period must be a string"},
				{File: "o.yml", Line: 5, Severity: Error, Message: `services.web.deploy.replicas: "two" is not an integer`},
			},
		},
		{
			name: "unknown attributes where the schema lists them",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    deploy:\n      resources:\n        limits:\n" +
				"          memoryy: 1G\n          cpuss: 1\n"},
			want: Problems{{File: "c.yml", Line: 8, Severity: Error,
				Message: `services.web.deploy.resources.limits: unknown attributes "cpuss", "memoryy"; check their spelling against the Compose Specification`}},
		},
		{
			name:  "malformed port, located at its item",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    ports:\n      - \"8080:80\"\n      - \"80:80:80\"\n"},
			want:  Problems{{File: "c.yml", Line: 6, Severity: Error, Message: `services.web.ports.1: "80:80:80": Invalid ip address: 80`}},
		},
		{
			name:  "restart condition Swarm does not know",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    deploy:\n      restart_policy:\n        condition: sometimes\n"},
			want: Problems{{File: "c.yml", Line: 6, Severity: Error,
				Message: `service "web": deploy.restart_policy.condition "sometimes" is not a Swarm restart condition; use none, on-failure or any`}},
		},
		{
			name: "label_file and config file over the size capstan reads",
			files: map[string]string{
				"c.yml":    "services:\n  web:\n    image: nginx\n    label_file: [ok.txt, big.txt]\n    configs: [conf]\nconfigs:\n  conf:\n    file: big.json\n",
				"ok.txt":   "a=b\n",
				"big.txt":  strings.Repeat("a=b\n", (5<<20)/4),
				"big.json": strings.Repeat(" ", 5<<20),
			},
			want: Problems{
				{File: "c.yml", Line: 4, Severity: Error, Message: `service "web": label_file big.txt: file is 5.0 MiB; capstan reads files of at most 4.0 MiB`},
				{File: "c.yml", Line: 7, Severity: Error, Message: `config "conf": cannot read file big.json: file is 5.0 MiB; capstan reads files of at most 4.0 MiB`},
			},
		},
		{
			name:  "undefined network",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    networks: [nope]\n"},
			want:  Problems{{File: "c.yml", Line: 2, Severity: Error, Message: `service "web" refers to undefined network nope`}},
		},
		{
			name: "secret file outside the source tree",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    secrets: [pw]\n" +
				"secrets:\n  pw:\n    file: /etc/hostname\n"},
			want: Problems{{File: "c.yml", Line: 6, Severity: Error, Message: `secret "pw": file /etc/hostname is outside the source tree`}},
		},
		{
			name: "secret file missing",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    secrets: [pw]\n" +
				"secrets:\n  pw:\n    file: pw.txt\n"},
			want: Problems{{File: "c.yml", Line: 6, Severity: Error, Message: `secret "pw": cannot read file pw.txt: no such file or directory`}},
		},
		{
			name: "config from an unset variable",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    configs: [conf]\n" +
				"configs:\n  conf:\n    environment: NGINX_CONF\n"},
			want: Problems{{File: "c.yml", Line: 6, Severity: Error, Message: `config "conf": environment variable NGINX_CONF is not set; set it in the Stack document's spec.variables or an envFile`}},
		},
		{
			name:  "env_file outside the source tree",
			files: map[string]string{"stacks/app/c.yml": "services:\n  web:\n    image: nginx\n    env_file: ../../../outside.env\n"},
			order: []string{"stacks/app/c.yml"},
			want: Problems{{File: "stacks/app/c.yml", Line: 4, Severity: Error,
				Message: `service "web": env_file <parent>/outside.env is outside the source tree`}},
		},
		{
			name:  "bind mount from the home directory",
			files: map[string]string{"c.yml": "services:\n  web:\n    image: nginx\n    volumes:\n      - ~/data:/data\n      - type: bind\n        source: ~/conf\n        target: /conf\n"},
			want: Problems{
				{File: "c.yml", Line: 5, Severity: Error, Message: `service "web": bind mount source ~/data starts with ~, which means nothing on a Swarm node; use an absolute path`},
				{File: "c.yml", Line: 7, Severity: Error, Message: `service "web": bind mount source ~/conf starts with ~, which means nothing on a Swarm node; use an absolute path`},
			},
		},
		{
			name:  "extends file outside the source tree",
			files: map[string]string{"c.yml": "services:\n  web:\n    extends:\n      file: /etc/compose.yml\n      service: base\n"},
			want:  Problems{{File: "c.yml", Line: 4, Severity: Error, Message: "extends file /etc/compose.yml is outside the source tree"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order := tt.order
			if order == nil {
				order = []string{"c.yml"}
			}
			root := composeTree(t, tt.files)
			var files []string
			for _, f := range order {
				files = append(files, filepath.Join(root, filepath.FromSlash(f)))
			}
			res, probs := loadCompose(composeInput{Stack: "errs", Root: root, Files: files, Env: tt.env})
			if res != nil {
				t.Errorf("resources returned despite errors: %v", res)
			}
			// A path escaping the tree is shown resolved, absolute.
			want := append(Problems(nil), tt.want...)
			for i := range want {
				want[i].Message = strings.ReplaceAll(want[i].Message, "<parent>", filepath.Dir(root))
			}
			if diff := cmp.Diff(want, probs); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadComposeMerge checks that files merge in order and that each resource points
// at the file and line that declared it.
func TestLoadComposeMerge(t *testing.T) {
	files := map[string]string{
		"base.yml": `services:
  web:
    image: nginx:1.24
    environment:
      LEVEL: base
      KEEP: "yes"
    deploy:
      replicas: 1
  db:
    image: postgres:16
`,
		"prod/override.yml": `services:
  web:
    image: nginx:1.25
    environment:
      LEVEL: prod
    deploy:
      replicas: 4
  cache:
    image: redis:7
networks:
  default:
    driver_opts:
      encrypted: "true"
`,
	}
	res, probs := loadComposeTree(t, "shop", nil, files, "base.yml", "prod/override.yml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	web := findResource(t, res, resource.ServiceKey("shop_web"))
	if web.Source != "base.yml:2" {
		t.Errorf("web Source = %q, want base.yml:2", web.Source)
	}
	if got := web.Service.TaskTemplate.ContainerSpec.Image; got != "nginx:1.25" {
		t.Errorf("image = %q, want the override's nginx:1.25", got)
	}
	if diff := cmp.Diff([]string{"KEEP=yes", "LEVEL=prod"}, web.Service.TaskTemplate.ContainerSpec.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	if got := *web.Service.Mode.Replicated.Replicas; got != 4 {
		t.Errorf("replicas = %d, want 4", got)
	}
	if c := findResource(t, res, resource.ServiceKey("shop_cache")); c.Source != "prod/override.yml:8" {
		t.Errorf("cache Source = %q, want prod/override.yml:8", c.Source)
	}
	n := findResource(t, res, resource.NetworkKey("shop_default"))
	if diff := cmp.Diff(map[string]string{"encrypted": "true"}, n.Network.Options); diff != "" {
		t.Errorf("default network options (-want +got):\n%s", diff)
	}
	if n.Source != "prod/override.yml:11" {
		t.Errorf("network Source = %q, want prod/override.yml:11", n.Source)
	}
	var order []string
	for _, r := range res {
		order = append(order, r.Key.String())
	}
	want := []string{"swarm/network/shop_default", "swarm/service/shop_cache", "swarm/service/shop_db", "swarm/service/shop_web"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("resource order (-want +got):\n%s", diff)
	}
}

// TestLoadComposeEnvironmentIsTheInputOnly proves interpolation reads in.Env and nothing
// else: not the process environment, not a .env file next to the compose file.
func TestLoadComposeEnvironmentIsTheInputOnly(t *testing.T) {
	t.Setenv("CAPSTAN_LEAK", "from-the-process")
	t.Setenv("TAG", "from-the-process")
	t.Setenv("CAPSTAN_FILE_LEAK", "from-the-process")
	files := map[string]string{
		".env":    "TAG=from-dotenv\nCAPSTAN_LEAK=from-dotenv\n",
		"app.env": "CAPSTAN_FILE_LEAK\nFROM_FILE=${CAPSTAN_LEAK:-file-default}\n",
		"compose.yml": `services:
  app:
    image: busybox:${TAG}
    env_file: app.env
    environment:
      LEAK: ${CAPSTAN_LEAK:-not-leaked}
      PASSED:
      CAPSTAN_LEAK:
    labels:
      unset: "${NOPE}"
`,
	}
	res, probs := loadComposeTree(t, "env", map[string]string{"TAG": "1.36", "PASSED": "given"}, files, "compose.yml")
	wantProbs := Problems{{File: "compose.yml", Line: 10, Severity: Warning,
		Message: "variable NOPE is not set, so an empty string is used; set it in the Stack document's spec.variables or an envFile"}}
	if diff := cmp.Diff(wantProbs, probs); diff != "" {
		t.Fatalf("problems (-want +got):\n%s", diff)
	}
	c := findResource(t, res, resource.ServiceKey("env_app")).Service.TaskTemplate.ContainerSpec
	if c.Image != "busybox:1.36" {
		t.Errorf("image = %q, want busybox:1.36 from the input environment", c.Image)
	}
	// A bare key in an env_file takes its value from the input environment, and is
	// dropped when that does not set it.
	want := []string{"CAPSTAN_LEAK", "FROM_FILE=file-default", "LEAK=not-leaked", "PASSED=given"}
	if diff := cmp.Diff(want, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

// TestLoadComposeResources checks the resource envelope: keys, stack, sources, external
// objects, empty secret IDs, no capstan labels.
func TestLoadComposeResources(t *testing.T) {
	files := map[string]string{
		"pw.txt": "hunter2",
		"app/compose.yml": `services:
  api:
    image: example/api:1
    networks: [back, shared]
    secrets: [pw, token]
    configs: [conf]
networks:
  back:
  shared:
    external: true
    name: platform-net
secrets:
  pw:
    file: ../pw.txt
  token:
    external: true
configs:
  conf:
    content: |
      listen ${PORT}
`,
	}
	res, probs := loadComposeTree(t, "svc", map[string]string{"PORT": "8080"}, files, "app/compose.yml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	type envelope struct {
		Key      string
		Source   string
		External bool
	}
	var got []envelope
	for _, r := range res {
		if r.Stack != "svc" {
			t.Errorf("%s: Stack = %q", r.Key, r.Stack)
		}
		for k := range r.Labels() {
			if strings.HasPrefix(k, "dev.capstan.") {
				t.Errorf("%s carries capstan label %s; the caller stamps those", r.Key, k)
			}
		}
		got = append(got, envelope{r.Key.String(), r.Source, r.External})
	}
	want := []envelope{
		{"swarm/network/svc_back", "app/compose.yml:8", false},
		{"swarm/network/platform-net", "app/compose.yml:9", true},
		{"swarm/secret/svc_pw", "app/compose.yml:13", false},
		{"swarm/secret/token", "app/compose.yml:15", true},
		{"swarm/config/svc_conf", "app/compose.yml:18", false},
		{"swarm/service/svc_api", "app/compose.yml:2", false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources (-want +got):\n%s", diff)
	}
	pw := findResource(t, res, resource.SecretKey("svc_pw"))
	if string(pw.Secret.Data) != "hunter2" {
		t.Errorf("secret data = %q, want the file's content", pw.Secret.Data)
	}
	conf := findResource(t, res, resource.ConfigKey("svc_conf"))
	if string(conf.Config.Data) != "listen 8080\n" {
		t.Errorf("config data = %q, want the interpolated content", conf.Config.Data)
	}
	ext := findResource(t, res, resource.SecretKey("token"))
	if diff := cmp.Diff(&swarm.SecretSpec{Annotations: swarm.Annotations{Name: "token"}}, ext.Secret); diff != "" {
		t.Errorf("external secret (-want +got):\n%s", diff)
	}
	api := findResource(t, res, resource.ServiceKey("svc_api")).Service.TaskTemplate.ContainerSpec
	for _, s := range api.Secrets {
		if s.SecretID != "" {
			t.Errorf("secret %s has ID %q; IDs are resolved by the sink", s.SecretName, s.SecretID)
		}
	}
	wantSecrets := []*swarm.SecretReference{
		{File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o444}, SecretName: "svc_pw"},
		{File: &swarm.SecretReferenceFileTarget{Name: "token", UID: "0", GID: "0", Mode: 0o444}, SecretName: "token"},
	}
	if diff := cmp.Diff(wantSecrets, api.Secrets); diff != "" {
		t.Errorf("secret references (-want +got):\n%s", diff)
	}
}

// TestLoadComposeSpecFeatures covers Compose Specification attributes docker stack
// deploy cannot read, which capstan maps onto Swarm settings.
func TestLoadComposeSpecFeatures(t *testing.T) {
	files := map[string]string{"compose.yaml": `services:
  app:
    image: example/app:2
    oom_score_adj: 200
    dns_opt: [ndots:2]
    group_add: [audio]
    ports:
      - name: web
        target: 80
        published: "8000-8001"
    volumes:
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 1m
          mode: 01777
    networks:
      back:
        use_service_name_alias: false
        aliases: [api]
    secrets: [token]
networks:
  back:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.30.0.0/24
          gateway: 10.30.0.1
          ip_range: 10.30.0.128/25
secrets:
  token:
    environment: API_TOKEN
`}
	res, probs := loadComposeTree(t, "spec", map[string]string{"API_TOKEN": "t0ken"}, files, "compose.yaml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	s := findResource(t, res, resource.ServiceKey("spec_app")).Service
	c := s.TaskTemplate.ContainerSpec
	if c.OomScoreAdj != 200 {
		t.Errorf("OomScoreAdj = %d, want 200", c.OomScoreAdj)
	}
	if diff := cmp.Diff(&swarm.DNSConfig{Options: []string{"ndots:2"}}, c.DNSConfig); diff != "" {
		t.Errorf("DNSConfig (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"audio"}, c.Groups); diff != "" {
		t.Errorf("Groups (-want +got):\n%s", diff)
	}
	wantPorts := []swarm.PortConfig{
		{Name: "web", TargetPort: 80, PublishedPort: 8000},
		{Name: "web", TargetPort: 80, PublishedPort: 8001},
	}
	if diff := cmp.Diff(wantPorts, s.EndpointSpec.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	wantMounts := []mount.Mount{{Type: mount.TypeTmpfs, Target: "/scratch", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777}}}
	if diff := cmp.Diff(wantMounts, c.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	wantNets := []swarm.NetworkAttachmentConfig{{Target: "spec_back", Aliases: []string{"api"}}}
	if diff := cmp.Diff(wantNets, s.TaskTemplate.Networks); diff != "" {
		t.Errorf("networks (-want +got):\n%s", diff)
	}
	yes := true
	wantNet := &network.CreateOptions{
		Labels:     map[string]string{resource.LabelNamespace: "spec"},
		EnableIPv6: &yes,
		IPAM: &network.IPAM{Config: []network.IPAMConfig{
			{Subnet: "10.30.0.0/24", Gateway: "10.30.0.1", IPRange: "10.30.0.128/25"}}},
	}
	if diff := cmp.Diff(wantNet, findResource(t, res, resource.NetworkKey("spec_back")).Network); diff != "" {
		t.Errorf("network (-want +got):\n%s", diff)
	}
	if got := string(findResource(t, res, resource.SecretKey("spec_token")).Secret.Data); got != "t0ken" {
		t.Errorf("secret data = %q, want the variable's value", got)
	}
}

// TestLoadComposeHealthcheckDurations guards the duration conversion of a compose-go
// type that is not time.Duration.
func TestLoadComposeHealthcheckDurations(t *testing.T) {
	files := map[string]string{"c.yml": "services:\n  a:\n    image: x\n    stop_grace_period: 1m\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1m30s\n"}
	res, probs := loadComposeTree(t, "h", nil, files, "c.yml")
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	c := findResource(t, res, resource.ServiceKey("h_a")).Service.TaskTemplate.ContainerSpec
	if c.Healthcheck.Interval != 90*time.Second || *c.StopGracePeriod != time.Minute {
		t.Errorf("interval %v, stop grace period %v", c.Healthcheck.Interval, *c.StopGracePeriod)
	}
}

func TestLoadComposeServiceNameTooLong(t *testing.T) {
	name := strings.Repeat("s", 60)
	files := map[string]string{"c.yml": "services:\n  " + name + ":\n    image: x\n"}
	_, probs := loadComposeTree(t, "stack", nil, files, "c.yml")
	want := Problems{{File: "c.yml", Line: 2, Severity: Error,
		Message: `service "` + name + `": the Swarm service name "stack_` + name + `" is longer than 63 characters; shorten the stack or service name`}}
	if diff := cmp.Diff(want, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestComposeCompatibilityDocumentsEveryRule keeps docs/compose-compatibility.md in step
// with the key policy: every key capstan ignores or refuses is named there.
func TestComposeCompatibilityDocumentsEveryRule(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "compose-compatibility.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range composeRuleTable() {
		key := strings.SplitN(line, "\t", 2)[0]
		key = strings.TrimPrefix(key, "services.*.")
		key = strings.ReplaceAll(key, ".[]", "[]")
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("docs/compose-compatibility.md does not mention `%s`", key)
		}
	}
}

// TestLoadComposeExtends resolves extends from another file of the tree, and refuses one
// reached through "..": the path is relative to the first compose file's directory.
func TestLoadComposeExtends(t *testing.T) {
	files := map[string]string{
		"common/base.yml": "services:\n  base:\n    image: example/base:1\n    environment:\n      FROM: base\n",
		"stacks/app/compose.yml": `services:
  web:
    extends:
      file: ../../common/base.yml
      service: base
    environment:
      OWN: "yes"
`,
		"stacks/evil/compose.yml": "services:\n  web:\n    extends:\n      file: ../../../outside.yml\n      service: base\n",
	}
	res, probs := loadComposeTree(t, "ext", nil, files, "stacks/app/compose.yml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	c := findResource(t, res, resource.ServiceKey("ext_web")).Service.TaskTemplate.ContainerSpec
	if c.Image != "example/base:1" {
		t.Errorf("image = %q, want the extended service's", c.Image)
	}
	if diff := cmp.Diff([]string{"FROM=base", "OWN=yes"}, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}

	_, probs = loadComposeTree(t, "ext", nil, files, "stacks/evil/compose.yml")
	want := Problems{{File: "stacks/evil/compose.yml", Line: 4, Severity: Error, Message: "extends file ../../../outside.yml is outside the source tree"}}
	if diff := cmp.Diff(want, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestLoadComposeSymlinkEscape refuses a secret file that is a symlink leaving the tree.
func TestLoadComposeSymlinkEscape(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(outside, []byte("do not copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := composeTree(t, map[string]string{"c.yml": "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: link\n"})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Skipf("cannot create a symlink here: %v", err)
	}
	res, probs := loadCompose(composeInput{Stack: "sym", Root: root, Files: []string{filepath.Join(root, "c.yml")}})
	if res != nil {
		t.Errorf("resources returned: %v", res)
	}
	want := Problems{{File: "c.yml", Line: 6, Severity: Error, Message: `secret "s": file link leads outside the source tree (to ` + outside + `)`}}
	if diff := cmp.Diff(want, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestLoadComposeRootBehindSymlink checks a source root reached through a symlink (a
// checkout cache often is): files inside it are inside, a missing one is just missing.
func TestLoadComposeRootBehindSymlink(t *testing.T) {
	real := composeTree(t, map[string]string{
		"c.yml":  "services:\n  a:\n    image: x\n    secrets: [s, m]\nsecrets:\n  s:\n    file: s.txt\n  m:\n    file: missing.txt\n",
		"s.txt":  "ok",
		"c2.yml": "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s:\n    file: s.txt\n",
	})
	root := filepath.Join(t.TempDir(), "checkout")
	if err := os.Symlink(real, root); err != nil {
		t.Skipf("cannot create a symlink here: %v", err)
	}
	_, probs := loadCompose(composeInput{Stack: "ln", Root: root, Files: []string{filepath.Join(root, "c.yml")}})
	want := Problems{{File: "c.yml", Line: 8, Severity: Error, Message: `secret "m": cannot read file missing.txt: no such file or directory`}}
	if diff := cmp.Diff(want, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	res, probs := loadCompose(composeInput{Stack: "ln", Root: root, Files: []string{filepath.Join(root, "c2.yml")}})
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	if got := string(findResource(t, res, resource.SecretKey("ln_s")).Secret.Data); got != "ok" {
		t.Errorf("secret data = %q", got)
	}
}

// TestLoadComposeStackNameOutsideComposeAlphabet: compose-go only takes lowercase
// project names; Swarm names still come from the stack as written.
func TestLoadComposeStackNameOutsideComposeAlphabet(t *testing.T) {
	files := map[string]string{"c.yml": "services:\n  web:\n    image: x\n    networks: [back]\n    volumes: [data:/data]\nnetworks:\n  back:\nvolumes:\n  data:\n"}
	res, probs := loadComposeTree(t, "Shop", nil, files, "c.yml")
	if len(probs) != 0 {
		t.Fatalf("unexpected problems:\n%s", probs)
	}
	findResource(t, res, resource.NetworkKey("Shop_back"))
	s := findResource(t, res, resource.ServiceKey("Shop_web")).Service
	if got := s.TaskTemplate.Networks[0].Target; got != "Shop_back" {
		t.Errorf("network target = %q, want Shop_back", got)
	}
	if got := s.TaskTemplate.ContainerSpec.Mounts[0].Source; got != "Shop_data" {
		t.Errorf("volume source = %q, want Shop_data", got)
	}
	if got := s.Labels[resource.LabelNamespace]; got != "Shop" {
		t.Errorf("namespace label = %q, want Shop", got)
	}
}
