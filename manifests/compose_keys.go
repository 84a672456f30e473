package manifests

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/schema"
	"github.com/compose-spec/compose-go/v2/tree"
)

// The compose key policy. Every attribute of the Compose Specification falls under the
// longest rule below that matches it: converted into the Swarm spec (no severity),
// ignored with a warning, or refused with an error. The allowlist handed to compose-go is
// derived from this table, so an attribute a future specification adds is reported as
// ignored until someone decides what it means on Swarm: nothing is dropped silently.
//
// docs/compose-compatibility.md is the user-facing copy of this table.

type composeKeyRule struct {
	path     tree.Path
	severity Severity // "" when capstan converts the attribute
	why      string
	// exact rules cover the node itself, not what lies below it: "services.*" admits a
	// service without admitting every attribute a service may have.
	exact bool
}

const composeWhyGeneric = "Swarm services do not support it"

var composeKeyRules = []composeKeyRule{
	{path: "version"},
	{path: "name"}, // checked by hand: the Stack document names the stack
	{path: "include", severity: Error, why: "list every file in the Stack document's spec.compose instead, so capstan can check it stays inside the source tree"},
	{path: "jobs", severity: Error, why: "declare a service with deploy.mode: replicated-job or global-job instead"},
	{path: "models", severity: Warning, why: "Swarm has no model runner"},

	{path: "networks"},
	{path: "networks.*"},
	{path: "networks.*.enable_ipv4", severity: Warning, why: "the Docker Engine API capstan speaks (1.41) cannot switch IPv4 off"},
	{path: "volumes"},
	{path: "secrets"},
	{path: "configs"},

	{path: "services", exact: true},
	{path: "services.*", exact: true},
	{path: "services.*.image"},
	{path: "services.*.command"},
	{path: "services.*.entrypoint"},
	{path: "services.*.environment"},
	{path: "services.*.env_file"},
	{path: "services.*.labels"},
	{path: "services.*.label_file"},
	{path: "services.*.ports"},
	{path: "services.*.ports.[].host_ip", severity: Warning, why: "Swarm publishes a port on every address of every node"},
	{path: "services.*.ports.[].app_protocol", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.networks"},
	{path: "services.*.networks.*.ipv4_address", severity: Warning, why: "Swarm assigns task addresses itself"},
	{path: "services.*.networks.*.ipv6_address", severity: Warning, why: "Swarm assigns task addresses itself"},
	{path: "services.*.networks.*.link_local_ips", severity: Warning, why: "Swarm assigns task addresses itself"},
	{path: "services.*.networks.*.mac_address", severity: Warning, why: "Swarm assigns task addresses itself"},
	{path: "services.*.networks.*.interface_name", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.networks.*.priority", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.networks.*.gw_priority", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.network_mode"}, // host and none map to Swarm networks; see convertNetworkMode
	{path: "services.*.volumes"},
	{path: "services.*.volumes.[].bind.selinux", severity: Warning, why: "Swarm does not relabel bind mounts for SELinux"},
	{path: "services.*.volumes.[].bind.recursive", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.volumes.[].volume.labels", severity: Warning, why: "set labels on the top-level volume instead"},
	{path: "services.*.secrets"},
	{path: "services.*.configs"},
	{path: "services.*.deploy"},
	{path: "services.*.deploy.resources.reservations.devices", severity: Warning, why: "Swarm cannot reserve devices; use generic_resources"},
	{path: "services.*.healthcheck"},
	{path: "services.*.dns"},
	{path: "services.*.dns_search"},
	{path: "services.*.dns_opt"},
	{path: "services.*.hostname"},
	{path: "services.*.extra_hosts"},
	{path: "services.*.user"},
	{path: "services.*.group_add"},
	{path: "services.*.working_dir"},
	{path: "services.*.stop_grace_period"},
	{path: "services.*.stop_signal"},
	{path: "services.*.sysctls"},
	{path: "services.*.ulimits"},
	{path: "services.*.cap_add"},
	{path: "services.*.cap_drop"},
	{path: "services.*.init"},
	{path: "services.*.read_only"},
	{path: "services.*.tty"},
	{path: "services.*.stdin_open"},
	{path: "services.*.logging"},
	{path: "services.*.isolation"},
	{path: "services.*.oom_score_adj"},
	{path: "services.*.credential_spec"},
	{path: "services.*.extends"},  // resolved by compose-go before conversion
	{path: "services.*.profiles"}, // services with profiles are skipped, with a warning
	// Compose v2 keys capstan maps onto Swarm's own settings (see convertV2Resources).
	{path: "services.*.restart"},
	{path: "services.*.scale"},
	{path: "services.*.mem_limit"},
	{path: "services.*.mem_reservation"},
	{path: "services.*.cpus"},
	{path: "services.*.pids_limit"},

	{path: "services.*.volumes_from", severity: Error, why: "Swarm services cannot mount another container's volumes; declare a named volume under the top-level volumes key and mount it in each service that shares it"},
	{path: "services.*.ipc", severity: Warning, why: "Swarm services always get their own IPC namespace"},
	{path: "services.*.pid", severity: Warning, why: "Swarm services always get their own PID namespace"},
	{path: "services.*.build", severity: Warning, why: "capstan deploys images, it does not build them"},
	{path: "services.*.links", severity: Warning, why: "services on a shared network reach each other by service name; use network aliases for other names"},
	{path: "services.*.external_links", severity: Warning, why: "services on a shared network reach each other by service name"},
	{path: "services.*.privileged", severity: Warning, why: "Swarm services cannot run privileged; grant what the service needs with cap_add"},
	{path: "services.*.devices", severity: Warning, why: "Swarm services cannot map host devices"},
	{path: "services.*.device_cgroup_rules", severity: Warning, why: "Swarm services cannot map host devices"},
	{path: "services.*.container_name", severity: Warning, why: "Swarm names each task <stack>_<service>.<slot>.<task id>"},
	{path: "services.*.expose", severity: Warning, why: "services on a shared network reach each other on any port; publish with ports"},
	{path: "services.*.depends_on", severity: Warning, why: "Swarm starts services in any order; let the service retry until its dependencies answer"},
	{path: "services.*.tmpfs", severity: Warning, why: "docker stack deploy ignores it too; mount a volume of type tmpfs instead"},
	{path: "services.*.security_opt", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.cgroup", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.cgroup_parent", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.userns_mode", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.uts", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.shm_size", severity: Warning, why: "mount a volume of type tmpfs at /dev/shm instead"},
	{path: "services.*.mac_address", severity: Warning, why: "Swarm assigns task addresses itself"},
	{path: "services.*.domainname", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.memswap_limit", severity: Warning, why: "Swarm has no swap limit"},
	{path: "services.*.mem_swappiness", severity: Warning, why: "Swarm has no swap settings"},
	{path: "services.*.cpu_shares", severity: Warning, why: "Swarm has no CPU shares; use cpus or deploy.resources"},
	{path: "services.*.cpu_quota", severity: Warning, why: "use cpus or deploy.resources.limits.cpus"},
	{path: "services.*.cpu_period", severity: Warning, why: "use cpus or deploy.resources.limits.cpus"},
	{path: "services.*.cpuset", severity: Warning, why: "Swarm cannot pin CPUs"},
	{path: "services.*.cpu_count", severity: Warning, why: "use cpus or deploy.resources.limits.cpus"},
	{path: "services.*.cpu_percent", severity: Warning, why: "use cpus or deploy.resources.limits.cpus"},
	{path: "services.*.cpu_rt_period", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.cpu_rt_runtime", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.oom_kill_disable", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.blkio_config", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.platform", severity: Warning, why: "place tasks with deploy.placement.constraints (node.platform.arch, node.platform.os)"},
	{path: "services.*.gpus", severity: Warning, why: "Swarm cannot reserve GPUs this way; use deploy.resources.reservations.generic_resources"},
	{path: "services.*.pull_policy", severity: Warning, why: "Swarm pulls the image when a task starts on a node that lacks it"},
	{path: "services.*.develop", severity: Warning, why: "it is a docker compose development feature"},
	{path: "services.*.attach", severity: Warning, why: "it is a docker compose output feature"},
	{path: "services.*.post_start", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.pre_stop", severity: Warning, why: composeWhyGeneric},
	{path: "services.*.pre_start", severity: Warning, why: composeWhyGeneric},
}

// composeRuleFor returns the longest rule matching p (ok false when none does).
func composeRuleFor(p tree.Path) (composeKeyRule, bool) {
	parts := p.Parts()
	best, bestLen := composeKeyRule{}, -1
	for _, r := range composeKeyRules {
		rp := r.path.Parts()
		if len(rp) > len(parts) || len(rp) <= bestLen || (r.exact && len(rp) != len(parts)) {
			continue
		}
		if tree.Path(strings.Join(parts[:len(rp)], ".")).Matches(r.path) {
			best, bestLen = r, len(rp)
		}
	}
	return best, bestLen >= 0
}

var (
	composeSupportedOnce  sync.Once
	composeSupportedPaths []tree.Path
)

// composeSupported is the allowlist given to compose-go: every specified attribute whose
// rule converts it.
func composeSupported() []tree.Path {
	composeSupportedOnce.Do(func() {
		for _, p := range schema.AttributePaths() {
			if r, ok := composeRuleFor(p); ok && r.severity == "" {
				composeSupportedPaths = append(composeSupportedPaths, p)
			}
		}
	})
	return composeSupportedPaths
}

// composeFinding turns one attribute compose-go reported into a problem, or nil when the
// attribute is harmless (set to its empty value).
func composeFinding(f loader.UnsupportedAttribute) (sev Severity, msg string, ok bool) {
	if composeIsEmpty(f.Value) {
		return "", "", false
	}
	r, found := composeRuleFor(f.Path)
	if !found || r.severity == "" {
		r = composeKeyRule{severity: Warning, why: composeWhyGeneric}
	}
	parts := composePathParts(f.Path)
	subject, key := composeSubject(parts)
	switch key {
	case "ipc", "pid":
		if s, isStr := f.Value.(string); isStr && (strings.HasPrefix(s, "service:") || strings.HasPrefix(s, "container:")) {
			return Error, fmt.Sprintf("%s%s: %s is not supported: Swarm services cannot share another container's namespace", subject, key, s), true
		}
	}
	if r.severity == Error {
		return Error, fmt.Sprintf("%s%s is not supported: %s", subject, key, r.why), true
	}
	return Warning, fmt.Sprintf("%s%s is ignored: %s", subject, key, r.why), true
}

// composePathParts splits a tree.Path into its parts with dots inside keys restored.
func composePathParts(p tree.Path) []string {
	parts := p.Parts()
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(s, "👻", ".")
	}
	return parts
}

// composeSubject renders the "service "web": " prefix and the key below it.
func composeSubject(parts []string) (subject, key string) {
	switch {
	case len(parts) >= 3 && parts[0] == "services":
		return fmt.Sprintf("service %q: ", parts[1]), composeKeyString(parts[2:])
	case len(parts) >= 3:
		return fmt.Sprintf("%s %q: ", composeSingular(parts[0]), parts[1]), composeKeyString(parts[2:])
	default:
		return "", composeKeyString(parts)
	}
}

func composeSingular(section string) string {
	return strings.TrimSuffix(section, "s")
}

func composeKeyString(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if p == tree.PathMatchList {
			b.WriteString("[]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func composeIsEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Float64, reflect.Float32:
		return rv.IsZero()
	}
	return false
}

// composeRuleTable renders the rule table, for the compatibility document's test.
func composeRuleTable() []string {
	var out []string
	for _, r := range composeKeyRules {
		if r.severity == "" {
			continue
		}
		out = append(out, fmt.Sprintf("%s\t%s\t%s", r.path, r.severity, r.why))
	}
	sort.Strings(out)
	return out
}
