package manifests

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// The conversion mirrors docker/cli v28.5.2 cli/compose/convert field by field, including
// its nil-versus-empty choices (a spec hash sees the difference): Mounts, Ports,
// Networks, Secrets, Configs, Hosts, Ulimits and Placement.Preferences are always
// non-nil; Env, Constraints and capabilities are nil when empty; Privileges, Resources,
// Placement and EndpointSpec are always set.

// composeMaxNameLen is Swarm's limit for service names (they are DNS labels).
const composeMaxNameLen = 63

type composeConverter struct {
	l *composeLoader
	p *types.Project

	usedNetworks map[string]bool
	usedSecrets  map[string]bool
	usedConfigs  map[string]bool
}

func (l *composeLoader) convert(p *types.Project) []resource.Resource {
	c := &composeConverter{l: l, p: p,
		usedNetworks: map[string]bool{}, usedSecrets: map[string]bool{}, usedConfigs: map[string]bool{}}
	l.reportFindings(p)
	for _, name := range sortedComposeKeys(p.DisabledServices) {
		file, line := l.locate(false, "services", name)
		l.warnf(file, line, "service %q is skipped: it has profiles %v and capstan activates no profiles; remove profiles to deploy it",
			name, p.DisabledServices[name].Profiles)
	}

	var services []resource.Resource
	for _, name := range sortedComposeKeys(p.Services) {
		spec := c.service(p.Services[name])
		if spec == nil {
			continue
		}
		file, line := l.locate(false, "services", name)
		services = append(services, resource.Resource{
			Key:     resource.ServiceKey(spec.Name),
			Stack:   l.in.Stack,
			Source:  composeSource(file, line),
			Service: spec,
		})
	}
	var out []resource.Resource
	out = append(out, c.networks()...)
	out = append(out, c.secrets()...)
	out = append(out, c.configs()...)
	return append(out, services...)
}

func composeSource(file string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// reportFindings turns the attributes compose-go found outside the supported set into
// warnings and errors, each at the line of the file whose value won the merge.
func (l *composeLoader) reportFindings(p *types.Project) {
	for _, f := range l.findings {
		parts := composePathParts(f.Path)
		if len(parts) >= 2 && parts[0] == "services" {
			if _, skipped := p.DisabledServices[parts[1]]; skipped {
				continue
			}
		}
		if parts[len(parts)-1] == "host_ip" {
			// docker stack deploy is silent about 0.0.0.0 too: it is what Swarm does anyway.
			if s, ok := f.Value.(string); ok {
				if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil && ip.IsUnspecified() {
					continue
				}
			}
		}
		sev, msg, ok := composeFinding(f)
		if !ok {
			continue
		}
		file, line := l.locate(true, parts...)
		l.add(Problem{File: file, Line: line, Severity: sev, Message: msg})
	}
}

// svcProblem reports a problem with one service, located at one of its keys.
func (c *composeConverter) svcProblem(sev Severity, svc string, key []string, format string, args ...any) {
	file, line := c.l.locate(true, append([]string{"services", svc}, key...)...)
	c.l.add(Problem{File: file, Line: line, Severity: sev,
		Message: fmt.Sprintf("service %q: ", svc) + fmt.Sprintf(format, args...)})
}

func (c *composeConverter) scope(key string) string { return c.l.in.Stack + "_" + key }

// objName is the Swarm name of a top-level network, volume, secret or config. compose-go
// fills in "<project>_<key>" for unnamed ones; capstan names them "<stack>_<key>", which
// is the same unless the stack name is not a valid compose project name.
func (c *composeConverter) objName(key, name string, external bool) string {
	if external {
		if name == "" {
			return key
		}
		return name
	}
	if name == "" || name == c.l.project+"_"+key {
		return c.scope(key)
	}
	return name
}

func (c *composeConverter) service(s types.ServiceConfig) *swarm.ServiceSpec {
	before := len(c.l.probs)
	failed := func() bool {
		for _, p := range c.l.probs[before:] {
			if p.Severity == Error {
				return true
			}
		}
		return false
	}

	name := c.scope(s.Name)
	if len(name) > composeMaxNameLen {
		c.svcProblem(Error, s.Name, nil, "the Swarm service name %q is longer than %d characters; shorten the stack or service name", name, composeMaxNameLen)
	}
	c.checkImage(s)

	d := s.Deploy
	if d == nil {
		d = &types.DeployConfig{}
	}
	mode := c.mode(s, d)
	resources := c.resources(s, d)
	restart := c.restartPolicy(s, d)
	health := c.healthcheck(s)
	nets := c.serviceNetworks(s)
	secrets := c.secretRefs(s)
	configs, credSpec := c.configRefs(s)
	mounts := c.mounts(s)
	ports := c.ports(s)
	capAdd, capDrop := composeCapabilities(s.CapAdd, s.CapDrop)
	if failed() {
		return nil
	}

	var logDriver *swarm.Driver
	if s.Logging != nil {
		logDriver = &swarm.Driver{Name: s.Logging.Driver, Options: composeStringMap(s.Logging.Options)}
	}

	spec := &swarm.ServiceSpec{
		Annotations: swarm.Annotations{
			Name:   name,
			Labels: c.withStackLabel(d.Labels),
		},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           s.Image,
				Command:         composeStrings(s.Entrypoint),
				Args:            composeStrings(s.Command),
				Hostname:        s.Hostname,
				Hosts:           c.extraHosts(s),
				DNSConfig:       composeDNS(s),
				Healthcheck:     health,
				Env:             composeEnv(s.Environment),
				Labels:          c.withStackLabel(s.Labels),
				Dir:             s.WorkingDir,
				User:            s.User,
				Groups:          composeStrings(s.GroupAdd),
				Mounts:          mounts,
				StopGracePeriod: composeDurationPtr(s.StopGracePeriod),
				StopSignal:      s.StopSignal,
				TTY:             s.Tty,
				OpenStdin:       s.StdinOpen,
				Secrets:         secrets,
				Configs:         configs,
				ReadOnly:        s.ReadOnly,
				Privileges:      &swarm.Privileges{CredentialSpec: credSpec},
				Isolation:       container.Isolation(s.Isolation),
				Init:            composeBoolPtr(s.Init),
				Sysctls:         composeStringMap(s.Sysctls),
				CapabilityAdd:   capAdd,
				CapabilityDrop:  capDrop,
				Ulimits:         composeUlimits(s.Ulimits),
				OomScoreAdj:     s.OomScoreAdj,
			},
			LogDriver:     logDriver,
			Resources:     resources,
			RestartPolicy: restart,
			Placement: &swarm.Placement{
				Constraints: composeStrings(d.Placement.Constraints),
				Preferences: composePreferences(d.Placement.Preferences),
				MaxReplicas: d.Placement.MaxReplicas,
			},
			Networks: nets,
		},
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionMode(strings.ToLower(d.EndpointMode)), Ports: ports},
		Mode:           mode,
		UpdateConfig:   composeUpdateConfig(d.UpdateConfig),
		RollbackConfig: composeUpdateConfig(d.RollbackConfig),
	}
	spec.Labels[resource.LabelImage] = s.Image
	return spec
}

func (c *composeConverter) checkImage(s types.ServiceConfig) {
	if s.Image == "" {
		c.svcProblem(Error, s.Name, []string{"build"}, "no image is set; capstan deploys images and does not build them, so push the image and set image:")
		return
	}
	if _, err := reference.ParseAnyReference(s.Image); err != nil {
		c.svcProblem(Error, s.Name, []string{"image"}, "invalid image reference %q: %v", s.Image, err)
	}
}

// withStackLabel copies labels and adds the stack namespace label, which wins over a
// user label of the same name (as in docker stack deploy).
func (c *composeConverter) withStackLabel(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		out[k] = v
	}
	out[resource.LabelNamespace] = c.l.in.Stack
	return out
}

func (c *composeConverter) mode(s types.ServiceConfig, d *types.DeployConfig) swarm.ServiceMode {
	var replicas *uint64
	key := []string{"deploy", "replicas"}
	n := d.Replicas
	if n == nil && s.Scale != nil {
		// Compose v2 scale: what a Swarm user means by it is replicas.
		n, key = s.Scale, []string{"scale"}
	}
	if n != nil {
		if *n < 0 {
			c.svcProblem(Error, s.Name, key, "replicas must not be negative (got %d)", *n)
			return swarm.ServiceMode{}
		}
		v := uint64(*n)
		replicas = &v
	}
	var m swarm.ServiceMode
	switch d.Mode {
	case "global-job", "global":
		if replicas != nil {
			c.svcProblem(Error, s.Name, key, "replicas can only be used with replicated or replicated-job mode")
			return m
		}
		if d.Mode == "global" {
			m.Global = &swarm.GlobalService{}
		} else {
			m.GlobalJob = &swarm.GlobalJob{}
		}
	case "replicated-job":
		m.ReplicatedJob = &swarm.ReplicatedJob{MaxConcurrent: replicas, TotalCompletions: replicas}
	case "replicated", "":
		m.Replicated = &swarm.ReplicatedService{Replicas: replicas}
	default:
		c.svcProblem(Error, s.Name, []string{"deploy", "mode"}, "unknown deploy mode %q; use replicated, global, replicated-job or global-job", d.Mode)
	}
	return m
}

func (c *composeConverter) resources(s types.ServiceConfig, d *types.DeployConfig) *swarm.ResourceRequirements {
	raw := c.l.raw[s.Name]
	res := &swarm.ResourceRequirements{}
	if lim := d.Resources.Limits; lim != nil {
		res.Limits = &swarm.Limit{
			NanoCPUs:    c.cpus(s.Name, []string{"deploy", "resources", "limits", "cpus"}, raw.limitCPUs, float32(lim.NanoCPUs)),
			MemoryBytes: int64(lim.MemoryBytes),
			Pids:        lim.Pids,
		}
	}
	if rsv := d.Resources.Reservations; rsv != nil {
		var generic []swarm.GenericResource
		for _, g := range rsv.GenericResources {
			var r swarm.GenericResource
			if g.DiscreteResourceSpec != nil {
				r.DiscreteResourceSpec = &swarm.DiscreteGenericResource{Kind: g.DiscreteResourceSpec.Kind, Value: g.DiscreteResourceSpec.Value}
			}
			generic = append(generic, r)
		}
		res.Reservations = &swarm.Resources{
			NanoCPUs:         c.cpus(s.Name, []string{"deploy", "resources", "reservations", "cpus"}, raw.reserveCPUs, float32(rsv.NanoCPUs)),
			MemoryBytes:      int64(rsv.MemoryBytes),
			GenericResources: generic,
		}
	}
	c.v2Resources(s, res, raw)
	return res
}

// v2Resources maps the Compose v2 resource keys onto Swarm's limits and reservations,
// where deploy.resources does not already say the same (compose-go refuses conflicting
// values).
func (c *composeConverter) v2Resources(s types.ServiceConfig, res *swarm.ResourceRequirements, raw composeRaw) {
	limits := func() *swarm.Limit {
		if res.Limits == nil {
			res.Limits = &swarm.Limit{}
		}
		return res.Limits
	}
	if s.MemLimit > 0 && (res.Limits == nil || res.Limits.MemoryBytes == 0) {
		limits().MemoryBytes = int64(s.MemLimit)
	}
	if s.CPUS > 0 && (res.Limits == nil || res.Limits.NanoCPUs == 0) {
		limits().NanoCPUs = c.cpus(s.Name, []string{"cpus"}, raw.cpus, s.CPUS)
	}
	if s.PidsLimit > 0 && (res.Limits == nil || res.Limits.Pids == 0) {
		limits().Pids = s.PidsLimit
	}
	if s.MemReservation > 0 && (res.Reservations == nil || res.Reservations.MemoryBytes == 0) {
		if res.Reservations == nil {
			res.Reservations = &swarm.Resources{}
		}
		res.Reservations.MemoryBytes = int64(s.MemReservation)
	}
}

// cpus converts a CPU count to nano CPUs exactly as written (docker/cli parses the
// string as a rational number); typed is compose-go's float32 reading, used only when
// the raw value is gone.
func (c *composeConverter) cpus(svc string, key []string, raw any, typed float32) int64 {
	var text string
	switch v := raw.(type) {
	case nil:
		if typed == 0 {
			return 0
		}
		text = strconv.FormatFloat(float64(typed), 'f', -1, 32)
	case string:
		text = v
	case float64:
		text = strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		// compose-go casts services.*.cpus to float32; its shortest form is what was meant.
		text = strconv.FormatFloat(float64(v), 'f', -1, 32)
	default:
		text = fmt.Sprint(v)
	}
	if text == "" {
		return 0
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		c.svcProblem(Error, svc, key, "cpus: failed to parse %v as a rational number", text)
		return 0
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		c.svcProblem(Error, svc, key, "cpus %s is too precise: Swarm counts in billionths of a CPU", text)
		return 0
	}
	return nano.Num().Int64()
}

func (c *composeConverter) restartPolicy(s types.ServiceConfig, d *types.DeployConfig) *swarm.RestartPolicy {
	if rp := d.RestartPolicy; rp != nil {
		if s.Restart != "" {
			c.svcProblem(Warning, s.Name, []string{"restart"}, "restart is ignored: deploy.restart_policy is set")
		}
		switch swarm.RestartPolicyCondition(rp.Condition) {
		case "", swarm.RestartPolicyConditionNone, swarm.RestartPolicyConditionOnFailure, swarm.RestartPolicyConditionAny:
		default:
			// docker stack deploy passes it on and the Engine refuses the service
			// ("invalid RestartCondition"); better said before anything is applied.
			c.svcProblem(Error, s.Name, []string{"deploy", "restart_policy", "condition"},
				"deploy.restart_policy.condition %q is not a Swarm restart condition; use none, on-failure or any", rp.Condition)
			return nil
		}
		return &swarm.RestartPolicy{
			Condition:   swarm.RestartPolicyCondition(rp.Condition),
			Delay:       composeDurationPtr(rp.Delay),
			MaxAttempts: composeUint64Ptr(rp.MaxAttempts),
			Window:      composeDurationPtr(rp.Window),
		}
	}
	if s.Restart == "" {
		return nil
	}
	name, count, hasCount := strings.Cut(s.Restart, ":")
	if hasCount && name == "" {
		c.svcProblem(Error, s.Name, []string{"restart"}, "invalid restart policy %q: no policy before the colon", s.Restart)
		return nil
	}
	attempts := 0
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil {
			c.svcProblem(Error, s.Name, []string{"restart"}, "invalid restart policy %q: the maximum retry count must be an integer", s.Restart)
			return nil
		}
		attempts = n
	}
	switch name {
	case "no", "":
		c.svcProblem(Warning, s.Name, []string{"restart"}, "restart %q keeps Swarm's default restart policy (restart on any exit); set deploy.restart_policy.condition: none to stop restarts", s.Restart)
		return nil
	case "always", "unless-stopped":
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	case "on-failure":
		n := uint64(attempts)
		return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: &n}
	}
	c.svcProblem(Error, s.Name, []string{"restart"}, "unknown restart policy %q; use no, always, unless-stopped or on-failure[:N]", s.Restart)
	return nil
}

func (c *composeConverter) healthcheck(s types.ServiceConfig) *container.HealthConfig {
	h := s.HealthCheck
	if h == nil {
		return nil
	}
	if h.Disable {
		if len(h.Test) != 0 {
			c.svcProblem(Error, s.Name, []string{"healthcheck"}, "healthcheck: test and disable can't be set at the same time")
			return nil
		}
		return &container.HealthConfig{Test: []string{"NONE"}}
	}
	out := &container.HealthConfig{Test: composeStrings(h.Test)}
	if h.Timeout != nil {
		out.Timeout = time.Duration(*h.Timeout)
	}
	if h.Interval != nil {
		out.Interval = time.Duration(*h.Interval)
	}
	if h.StartPeriod != nil {
		out.StartPeriod = time.Duration(*h.StartPeriod)
	}
	if h.StartInterval != nil {
		out.StartInterval = time.Duration(*h.StartInterval)
	}
	if h.Retries != nil {
		out.Retries = int(*h.Retries)
	}
	return out
}

// serviceNetworks attaches the service to its networks, each with the service name as an
// alias on user-defined networks, sorted by target.
func (c *composeConverter) serviceNetworks(s types.ServiceConfig) []swarm.NetworkAttachmentConfig {
	nets := s.Networks
	switch mode := s.NetworkMode; {
	case mode == "":
	case mode == "host" || mode == "none":
		// Swarm attaches services to the node's host or none network like any other.
		return []swarm.NetworkAttachmentConfig{{Target: mode}}
	case mode == "bridge" || mode == "default":
		c.svcProblem(Warning, s.Name, []string{"network_mode"}, "network_mode %q is ignored: Swarm services cannot join the bridge network, so the service joins the stack's default network", mode)
		nets = nil
	case strings.HasPrefix(mode, "service:") || strings.HasPrefix(mode, "container:"):
		c.svcProblem(Error, s.Name, []string{"network_mode"}, "network_mode %q is not supported: Swarm services cannot share another container's network stack; put both services on one network and talk over it", mode)
		return nil
	default:
		c.svcProblem(Error, s.Name, []string{"network_mode"}, "network_mode %q is not supported: attach the service with networks instead", mode)
		return nil
	}
	if len(nets) == 0 {
		nets = map[string]*types.ServiceNetworkConfig{"default": nil}
	}
	out := []swarm.NetworkAttachmentConfig{}
	for _, key := range sortedComposeKeys(nets) {
		n := nets[key]
		cfg, declared := c.p.Networks[key]
		if !declared && key != "default" {
			c.svcProblem(Error, s.Name, []string{"networks", key}, "undefined network %q; declare it under the top-level networks key", key)
			continue
		}
		c.usedNetworks[key] = true
		target := c.objName(key, cfg.Name, bool(cfg.External))
		att := swarm.NetworkAttachmentConfig{Target: target}
		if n != nil {
			att.Aliases = composeStrings(n.Aliases)
			att.DriverOpts = composeStringMap(n.DriverOpts)
		}
		// Only user-defined networks carry aliases (host, bridge and none cannot).
		if composeUserDefined(target) && n.ServiceNameAliasEnabled() {
			att.Aliases = append(att.Aliases, s.Name)
		}
		out = append(out, att)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// composeUserDefined is container.NetworkMode.IsUserDefined on Linux.
func composeUserDefined(name string) bool {
	switch name {
	case "default", "bridge", "host", "none":
		return false
	}
	k, _, ok := strings.Cut(name, ":")
	return !(ok && k == "container")
}

func (c *composeConverter) fileTarget(svc, kind string, i int, ref types.FileReferenceConfig) (target, uid, gid string, mode os.FileMode) {
	target, uid, gid, mode = ref.Target, ref.UID, ref.GID, 0o444
	if target == "" {
		target = ref.Source
	}
	if uid == "" {
		uid = "0"
	}
	if gid == "" {
		gid = "0"
	}
	if ref.Mode != nil {
		if *ref.Mode < 0 || *ref.Mode > 0o7777 {
			c.svcProblem(Error, svc, []string{kind, strconv.Itoa(i), "mode"}, "%s %q: mode %o is not a file mode", kind, ref.Source, *ref.Mode)
		}
		mode = os.FileMode(uint32(*ref.Mode))
	}
	return target, uid, gid, mode
}

func (c *composeConverter) secretRefs(s types.ServiceConfig) []*swarm.SecretReference {
	refs := []*swarm.SecretReference{}
	byTarget := map[string]string{}
	for i, sc := range s.Secrets {
		obj, ok := c.p.Secrets[sc.Source]
		if !ok {
			c.svcProblem(Error, s.Name, []string{"secrets", strconv.Itoa(i)}, "undefined secret %q; declare it under the top-level secrets key", sc.Source)
			continue
		}
		c.usedSecrets[sc.Source] = true
		target, uid, gid, mode := c.fileTarget(s.Name, "secrets", i, types.FileReferenceConfig(sc))
		if prev, dup := byTarget[target]; dup {
			c.svcProblem(Error, s.Name, []string{"secrets", strconv.Itoa(i)}, "secrets %q and %q are both mounted at %s", prev, sc.Source, target)
			continue
		}
		byTarget[target] = sc.Source
		refs = append(refs, &swarm.SecretReference{
			File:       &swarm.SecretReferenceFileTarget{Name: target, UID: uid, GID: gid, Mode: mode},
			SecretName: c.objName(sc.Source, obj.Name, bool(obj.External)),
		})
	}
	sort.SliceStable(refs, func(i, j int) bool {
		if refs[i].SecretName != refs[j].SecretName {
			return refs[i].SecretName < refs[j].SecretName
		}
		return refs[i].File.Name < refs[j].File.Name
	})
	return refs
}

// configRefs returns the service's config references and its credential spec. A
// credential spec read from a Swarm config names the config by its Swarm name here; the
// sink swaps in the config ID (docker stack deploy resolves it at convert time).
func (c *composeConverter) configRefs(s types.ServiceConfig) ([]*swarm.ConfigReference, *swarm.CredentialSpec) {
	refs := []*swarm.ConfigReference{}
	byTarget := map[string]string{}
	for i, cc := range s.Configs {
		obj, ok := c.p.Configs[cc.Source]
		if !ok {
			c.svcProblem(Error, s.Name, []string{"configs", strconv.Itoa(i)}, "undefined config %q; declare it under the top-level configs key", cc.Source)
			continue
		}
		c.usedConfigs[cc.Source] = true
		target, uid, gid, mode := c.fileTarget(s.Name, "configs", i, types.FileReferenceConfig(cc))
		if prev, dup := byTarget[target]; dup {
			c.svcProblem(Error, s.Name, []string{"configs", strconv.Itoa(i)}, "configs %q and %q are both mounted at %s", prev, cc.Source, target)
			continue
		}
		byTarget[target] = cc.Source
		refs = append(refs, &swarm.ConfigReference{
			File:       &swarm.ConfigReferenceFileTarget{Name: target, UID: uid, GID: gid, Mode: mode},
			ConfigName: c.objName(cc.Source, obj.Name, bool(obj.External)),
		})
	}

	var cred *swarm.CredentialSpec
	if cs := s.CredentialSpec; cs != nil {
		var set []string
		for _, f := range []struct{ name, v string }{{"config", cs.Config}, {"file", cs.File}, {"registry", cs.Registry}} {
			if f.v != "" {
				set = append(set, f.name)
			}
		}
		switch {
		case len(set) > 1:
			c.svcProblem(Error, s.Name, []string{"credential_spec"}, "credential_spec: set only one of %s", strings.Join(set, ", "))
		case len(set) == 1:
			cred = &swarm.CredentialSpec{File: cs.File, Registry: cs.Registry}
			if cs.Config != "" {
				obj, ok := c.p.Configs[cs.Config]
				if !ok {
					c.svcProblem(Error, s.Name, []string{"credential_spec", "config"}, "credential_spec names undefined config %q", cs.Config)
					break
				}
				c.usedConfigs[cs.Config] = true
				name := c.objName(cs.Config, obj.Name, bool(obj.External))
				cred.Config = name
				refs = append(refs, &swarm.ConfigReference{ConfigName: name, Runtime: &swarm.ConfigReferenceRuntimeTarget{}})
			}
		}
	}
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].ConfigName < refs[j].ConfigName })
	return refs, cred
}

func (c *composeConverter) mounts(s types.ServiceConfig) []mount.Mount {
	out := make([]mount.Mount, 0, len(s.Volumes))
	for i, v := range s.Volumes {
		m, err := c.mount(v)
		if err != nil {
			c.svcProblem(Error, s.Name, []string{"volumes", strconv.Itoa(i)}, "volumes: %v", err)
			continue
		}
		if m.Type == mount.TypeBind && composeWithin(c.l.realRoot, m.Source) {
			c.svcProblem(Warning, s.Name, []string{"volumes", strconv.Itoa(i)},
				"bind mount source %s lies in capstan's checkout of the source tree; Swarm nodes mount that path from their own disk, so use an absolute host path",
				composeRel(c.l.realRoot, m.Source))
		}
		out = append(out, m)
	}
	return out
}

func (c *composeConverter) mount(v types.ServiceVolumeConfig) (mount.Mount, error) {
	m := mount.Mount{
		Type:        mount.Type(v.Type),
		Target:      v.Target,
		ReadOnly:    v.ReadOnly,
		Source:      v.Source,
		Consistency: mount.Consistency(v.Consistency),
	}
	incompatible := func(t string, opts map[string]bool) error {
		for _, o := range []string{"volume", "bind", "tmpfs", "image"} {
			if opts[o] {
				return fmt.Errorf("%s options are incompatible with type %s", o, t)
			}
		}
		return nil
	}
	has := map[string]bool{"volume": v.Volume != nil, "bind": v.Bind != nil, "tmpfs": v.Tmpfs != nil, "image": v.Image != nil}
	switch v.Type {
	case "volume", "":
		// compose-go gives every short-syntax named volume an empty volume block.
		if err := incompatible("volume", map[string]bool{"image": has["image"], "tmpfs": has["tmpfs"], "bind": has["bind"]}); err != nil {
			return m, err
		}
		if v.Source == "" {
			return m, nil // anonymous volume
		}
		vol, ok := c.p.Volumes[v.Source]
		if !ok {
			return m, fmt.Errorf("undefined volume %q; declare it under the top-level volumes key", v.Source)
		}
		m.Source = c.objName(v.Source, vol.Name, bool(vol.External))
		m.VolumeOptions = &mount.VolumeOptions{}
		if v.Volume != nil {
			m.VolumeOptions.NoCopy = v.Volume.NoCopy
			m.VolumeOptions.Subpath = v.Volume.Subpath
		}
		if vol.External {
			return m, nil
		}
		m.VolumeOptions.Labels = c.withStackLabel(vol.Labels)
		if vol.Driver != "" || vol.DriverOpts != nil {
			m.VolumeOptions.DriverConfig = &mount.Driver{Name: vol.Driver, Options: composeStringMap(vol.DriverOpts)}
		}
	case "image":
		if v.Source == "" {
			return m, errors.New("invalid image source, source cannot be empty")
		}
		if err := incompatible("image", map[string]bool{"volume": has["volume"], "bind": has["bind"], "tmpfs": has["tmpfs"]}); err != nil {
			return m, err
		}
		if v.Image != nil {
			m.ImageOptions = &mount.ImageOptions{Subpath: v.Image.SubPath}
		}
	case "bind", "npipe":
		if v.Source == "" {
			return m, fmt.Errorf("invalid %s source, source cannot be empty", v.Type)
		}
		if err := incompatible(v.Type, map[string]bool{"volume": has["volume"], "image": has["image"], "tmpfs": has["tmpfs"]}); err != nil {
			return m, err
		}
		if v.Bind != nil && v.Bind.Propagation != "" {
			m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
		}
	case "tmpfs":
		if v.Source != "" {
			return m, errors.New("invalid tmpfs source, source must be empty")
		}
		if err := incompatible("tmpfs", map[string]bool{"volume": has["volume"], "bind": has["bind"], "image": has["image"]}); err != nil {
			return m, err
		}
		if v.Tmpfs != nil {
			m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size), Mode: os.FileMode(v.Tmpfs.Mode)}
		}
	case "cluster":
		if v.Source == "" {
			return m, errors.New("invalid cluster source, source cannot be empty")
		}
		if err := incompatible("cluster", map[string]bool{"tmpfs": has["tmpfs"], "bind": has["bind"], "volume": has["volume"]}); err != nil {
			return m, err
		}
		m.ClusterOptions = &mount.ClusterOptions{}
		if !strings.HasPrefix(v.Source, "group:") {
			vol, ok := c.p.Volumes[v.Source]
			if !ok {
				return m, fmt.Errorf("undefined volume %q; declare it under the top-level volumes key", v.Source)
			}
			m.Source = c.objName(v.Source, vol.Name, bool(vol.External))
		}
	default:
		return m, fmt.Errorf("volume type %q: must be volume, bind, tmpfs, npipe, cluster or image", v.Type)
	}
	return m, nil
}

// ports converts published ports, expanding a published range onto one target port as
// docker/cli does, sorted by published port (stable, so equal ones keep file order).
func (c *composeConverter) ports(s types.ServiceConfig) []swarm.PortConfig {
	out := []swarm.PortConfig{}
	for i, p := range s.Ports {
		lo, hi, err := composePublished(p.Published)
		if err != nil {
			c.svcProblem(Error, s.Name, []string{"ports", strconv.Itoa(i)}, "ports: %v", err)
			continue
		}
		for pub := lo; ; pub++ {
			out = append(out, swarm.PortConfig{
				Name:          p.Name,
				Protocol:      swarm.PortConfigProtocol(p.Protocol),
				TargetPort:    p.Target,
				PublishedPort: pub,
				PublishMode:   swarm.PortConfigPublishMode(p.Mode),
			})
			if pub >= hi {
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].PublishedPort < out[j].PublishedPort })
	// Swarm refuses a published port used twice at apply time; say so now, at the line.
	seen := map[string]bool{}
	for _, p := range out {
		if p.PublishedPort == 0 {
			continue
		}
		proto, pubMode := p.Protocol, p.PublishMode
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		if pubMode == "" {
			pubMode = swarm.PortConfigPublishModeIngress
		}
		key := fmt.Sprintf("%d/%s", p.PublishedPort, proto)
		if seen[key] {
			c.svcProblem(Error, s.Name, []string{"ports"}, "published port %s is used twice (%s mode); each published port can map to one target port", key, pubMode)
		}
		seen[key] = true
	}
	return out
}

func composePublished(s string) (uint32, uint32, error) {
	if s == "" {
		return 0, 0, nil
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(loS, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("published port %q is not a port number", s)
	}
	hi := lo
	if isRange {
		if hi, err = strconv.ParseUint(hiS, 10, 16); err != nil || hi < lo {
			return 0, 0, fmt.Errorf("published port range %q is not a range of port numbers", s)
		}
	}
	return uint32(lo), uint32(hi), nil
}

// extraHosts renders extra_hosts as "IP host" lines in the order written (a mapping is
// sorted, as docker/cli sorts it), from the raw model: compose-go's typed one is a map.
func (c *composeConverter) extraHosts(s types.ServiceConfig) []string {
	type pair struct{ host, ip string }
	var pairs []pair
	split := func(entry string) {
		for _, sep := range []string{"=", ":"} {
			if h, ip, ok := strings.Cut(entry, sep); ok {
				for _, one := range strings.Split(ip, ",") {
					pairs = append(pairs, pair{h, one})
				}
				return
			}
		}
	}
	switch v := c.l.raw[s.Name].extraHosts.(type) {
	case []any:
		for _, e := range v {
			split(fmt.Sprint(e))
		}
	case map[string]any:
		var entries []string
		for h, ip := range v {
			switch ips := ip.(type) {
			case nil:
			case []any:
				for _, one := range ips {
					entries = append(entries, h+":"+fmt.Sprint(one))
				}
			default:
				entries = append(entries, h+":"+fmt.Sprint(ips))
			}
		}
		sort.Strings(entries)
		for _, e := range entries {
			split(e)
		}
	default:
		// Not in the raw model (unexpected): fall back to the typed one, sorted.
		for _, h := range sortedComposeKeys(s.ExtraHosts) {
			for _, ip := range s.ExtraHosts[h] {
				pairs = append(pairs, pair{h, ip})
			}
		}
	}
	out := make([]string, 0, len(pairs))
	for _, p := range pairs {
		ip := p.ip
		if len(ip) > 2 && ip[0] == '[' && ip[len(ip)-1] == ']' {
			ip = ip[1 : len(ip)-1]
		}
		out = append(out, ip+" "+p.host)
	}
	return out
}

func composeDNS(s types.ServiceConfig) *swarm.DNSConfig {
	if s.DNS == nil && s.DNSSearch == nil && s.DNSOpts == nil {
		return nil
	}
	return &swarm.DNSConfig{
		Nameservers: composeStrings(s.DNS),
		Search:      composeStrings(s.DNSSearch),
		Options:     composeStrings(s.DNSOpts),
	}
}

// composeEnv renders the environment as sorted K=V strings, a bare K for a variable
// without a value (the container then has none, as in docker stack deploy).
func composeEnv(env types.MappingWithEquals) []string {
	var out []string
	for k, v := range env {
		if v == nil {
			out = append(out, k)
		} else {
			out = append(out, k+"="+*v)
		}
	}
	sort.Strings(out)
	return out
}

// composeCapabilities normalizes cap_add and cap_drop like docker/cli's
// opts.EffectiveCapAddCapDrop: upper case with a CAP_ prefix, ALL wins over the rest,
// an added capability is not also dropped, RESET is dropped, both sorted.
func composeCapabilities(add, drop []string) ([]string, []string) {
	norm := func(caps []string) map[string]bool {
		out := map[string]bool{}
		for _, c := range caps {
			c = strings.ToUpper(strings.TrimSpace(c))
			if c != "ALL" && c != "RESET" && !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			out[c] = true
		}
		if out["ALL"] {
			return map[string]bool{"ALL": true}
		}
		return out
	}
	addSet, dropSet := norm(add), norm(drop)
	var capAdd, capDrop []string
	for c := range dropSet {
		if !addSet[c] && c != "RESET" {
			capDrop = append(capDrop, c)
		}
	}
	for c := range addSet {
		if c != "RESET" {
			capAdd = append(capAdd, c)
		}
	}
	sort.Strings(capAdd)
	sort.Strings(capDrop)
	return capAdd, capDrop
}

func composeUlimits(in map[string]*types.UlimitsConfig) []*container.Ulimit {
	out := make([]*container.Ulimit, 0, len(in))
	for _, name := range sortedComposeKeys(in) {
		u := in[name]
		if u == nil {
			continue
		}
		if u.Single != 0 {
			out = append(out, &container.Ulimit{Name: name, Soft: int64(u.Single), Hard: int64(u.Single)})
		} else {
			out = append(out, &container.Ulimit{Name: name, Soft: int64(u.Soft), Hard: int64(u.Hard)})
		}
	}
	return out
}

func composePreferences(prefs []types.PlacementPreferences) []swarm.PlacementPreference {
	out := []swarm.PlacementPreference{}
	for _, p := range prefs {
		out = append(out, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: p.Spread}})
	}
	return out
}

func composeUpdateConfig(u *types.UpdateConfig) *swarm.UpdateConfig {
	if u == nil {
		return nil
	}
	parallel := uint64(1)
	if u.Parallelism != nil {
		parallel = *u.Parallelism
	}
	return &swarm.UpdateConfig{
		Parallelism:     parallel,
		Delay:           time.Duration(u.Delay),
		FailureAction:   u.FailureAction,
		Monitor:         time.Duration(u.Monitor),
		MaxFailureRatio: u.MaxFailureRatio,
		Order:           u.Order,
	}
}

// Copies, so specs never share memory with compose-go's model (or with each other).

func composeStrings[S ~[]string](in S) []string {
	if in == nil {
		return nil
	}
	return append([]string{}, in...)
}

func composeStringMap[M ~map[string]string](in M) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

func composeDurationPtr(d *types.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := time.Duration(*d)
	return &v
}

func composeUint64Ptr(p *uint64) *uint64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func composeBoolPtr(p *bool) *bool {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// networks returns the networks the services use: the stack's own ones to create, and
// user-defined external ones (which must exist) as External.
func (c *composeConverter) networks() []resource.Resource {
	var out []resource.Resource
	byName := map[string]string{}
	for _, key := range sortedComposeKeys(c.usedNetworks) {
		cfg := c.p.Networks[key]
		name := c.objName(key, cfg.Name, bool(cfg.External))
		file, line := c.l.locate(false, "networks", key)
		src := composeSource(file, line)
		if cfg.External {
			if !composeUserDefined(name) {
				continue // host, bridge, none exist on every node
			}
			if _, dup := byName[name]; dup {
				continue
			}
			byName[name] = key
			out = append(out, resource.Resource{Key: resource.NetworkKey(name), Stack: c.l.in.Stack, Source: src,
				External: true, Network: &network.CreateOptions{}})
			continue
		}
		opts := network.CreateOptions{
			Labels:     c.withStackLabel(cfg.Labels),
			Driver:     cfg.Driver,
			Options:    composeStringMap(cfg.DriverOpts),
			Internal:   cfg.Internal,
			Attachable: cfg.Attachable,
			EnableIPv6: composeBoolPtr(cfg.EnableIPv6),
		}
		if cfg.Ipam.Driver != "" || len(cfg.Ipam.Config) > 0 || len(cfg.Ipam.Options) > 0 {
			opts.IPAM = &network.IPAM{Driver: cfg.Ipam.Driver, Options: composeStringMap(cfg.Ipam.Options)}
			for _, pool := range cfg.Ipam.Config {
				if pool == nil {
					continue
				}
				opts.IPAM.Config = append(opts.IPAM.Config, network.IPAMConfig{
					Subnet:     pool.Subnet,
					IPRange:    pool.IPRange,
					Gateway:    pool.Gateway,
					AuxAddress: composeStringMap(pool.AuxiliaryAddresses),
				})
			}
		}
		if prev, dup := byName[name]; dup {
			c.l.errorf(file, line, "networks %q and %q are both named %q; give them different names", prev, key, name)
			continue
		}
		byName[name] = key
		out = append(out, resource.Resource{Key: resource.NetworkKey(name), Stack: c.l.in.Stack, Source: src, Network: &opts})
	}
	return out
}

// fileObject is the part secrets and configs share.
type composeFileObject struct {
	kind string // "secret" or "config"
	key  string
	obj  types.FileObjectConfig
}

// objectData materializes the content of a secret or config: from file (inside the
// source tree), from an environment variable, or inline content.
func (c *composeConverter) objectData(o composeFileObject) ([]byte, bool) {
	section := o.kind + "s"
	fail := func(format string, args ...any) ([]byte, bool) {
		file, line := c.l.locate(false, section, o.key)
		c.l.errorf(file, line, "%s %q: %s", o.kind, o.key, fmt.Sprintf(format, args...))
		return nil, false
	}
	switch {
	case o.obj.File != "":
		if !c.l.inside(o.obj.File) {
			return fail("file %s", c.l.describeOutside(o.obj.File))
		}
		data, err := c.l.readRecorded(o.obj.File)
		if err != nil {
			return fail("cannot read file %s: %v", composeRel(c.l.in.Root, o.obj.File), trimComposePathError(err))
		}
		return data, true
	case o.obj.Environment != "":
		v, ok := c.p.Environment[o.obj.Environment]
		if !ok {
			return fail("environment variable %s is not set; set it in the Stack document's spec.variables or an envFile", o.obj.Environment)
		}
		return []byte(v), true
	case o.obj.Content != "":
		return []byte(o.obj.Content), true
	}
	return fail("set file, environment, content or external")
}

func (c *composeConverter) secrets() []resource.Resource {
	var out []resource.Resource
	byName := map[string]string{}
	for _, key := range sortedComposeKeys(c.p.Secrets) {
		obj := c.p.Secrets[key]
		name := c.objName(key, obj.Name, bool(obj.External))
		file, line := c.l.locate(false, "secrets", key)
		r := resource.Resource{Key: resource.SecretKey(name), Stack: c.l.in.Stack, Source: composeSource(file, line)}
		if obj.External {
			if !c.usedSecrets[key] {
				continue
			}
			r.External = true
			r.Secret = &swarm.SecretSpec{Annotations: swarm.Annotations{Name: name}}
		} else {
			spec := &swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: c.withStackLabel(obj.Labels)}}
			if obj.Driver != "" {
				if obj.File != "" {
					c.l.errorf(file, line, "secret %q: set either driver or file, not both", key)
					continue
				}
				spec.Data = []byte{}
				spec.Driver = &swarm.Driver{Name: obj.Driver, Options: composeStringMap(obj.DriverOpts)}
			} else {
				data, ok := c.objectData(composeFileObject{"secret", key, types.FileObjectConfig(obj)})
				if !ok {
					continue
				}
				spec.Data = data
			}
			if obj.TemplateDriver != "" {
				spec.Templating = &swarm.Driver{Name: obj.TemplateDriver}
			}
			r.Secret = spec
		}
		if !c.dedupe(byName, "secrets", key, name, r, out) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func (c *composeConverter) configs() []resource.Resource {
	var out []resource.Resource
	byName := map[string]string{}
	for _, key := range sortedComposeKeys(c.p.Configs) {
		obj := c.p.Configs[key]
		name := c.objName(key, obj.Name, bool(obj.External))
		file, line := c.l.locate(false, "configs", key)
		r := resource.Resource{Key: resource.ConfigKey(name), Stack: c.l.in.Stack, Source: composeSource(file, line)}
		if obj.External {
			if !c.usedConfigs[key] {
				continue
			}
			r.External = true
			r.Config = &swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name}}
		} else {
			data, ok := c.objectData(composeFileObject{"config", key, types.FileObjectConfig(obj)})
			if !ok {
				continue
			}
			spec := &swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: c.withStackLabel(obj.Labels)}, Data: data}
			if obj.TemplateDriver != "" {
				spec.Templating = &swarm.Driver{Name: obj.TemplateDriver}
			}
			r.Config = spec
		}
		if !c.dedupe(byName, "configs", key, name, r, out) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// dedupe lets two keys name the same Swarm object only when they mean the same thing.
func (c *composeConverter) dedupe(byName map[string]string, section, key, name string, r resource.Resource, out []resource.Resource) bool {
	prev, dup := byName[name]
	if !dup {
		byName[name] = key
		return true
	}
	for _, o := range out {
		if o.Key == r.Key && o.External == r.External && reflect.DeepEqual(o.Secret, r.Secret) && reflect.DeepEqual(o.Config, r.Config) {
			return false
		}
	}
	file, line := c.l.locate(false, section, key)
	c.l.errorf(file, line, "%s %q and %q both create %q with different content; give them different names", section, prev, key, name)
	return false
}
