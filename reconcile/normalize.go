package reconcile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capstan-dev/capstan/resource"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Defaults Swarm applies to a service spec that leaves them out (swarmkit
// api/defaults/service.go, what `docker service inspect` shows with insertDefaults).
const (
	defaultStopGracePeriod = 10 * time.Second
	defaultRestartDelay    = 5 * time.Second
	defaultUpdateMonitor   = 5 * time.Second
	defaultBindPropagation = mount.PropagationRPrivate
	defaultNetworkDriver   = "overlay"
	defaultIPAMDriver      = "default"
)

// allocatorNetworkOptions are driver options Swarm's allocator adds to a network it
// creates; the user never wrote them.
var allocatorNetworkOptions = []string{"com.docker.network.driver.overlay.vxlanid_list"}

// NormalizeService returns a copy of s in canonical form, so that a spec as capstan (or
// docker stack deploy) sends it and the same spec as Swarm returns it compare equal:
//
//   - dev.capstan.* service labels, TaskTemplate.ForceUpdate, secret and config IDs and
//     bind options Swarm does not store (CreateMountpoint, the read-only recursion
//     flags, Consistency) are dropped;
//   - Runtime "" is "container", Isolation "" is "default", the image gets its default
//     tag and its familiar name (docker.io/library/nginx → nginx:latest);
//   - enumerations Swarm stores case-insensitively (port protocol and publish mode,
//     endpoint mode, isolation, mount type and propagation) are lower-cased;
//   - a missing replica count is 1 (jobs: MaxConcurrent 1, TotalCompletions =
//     MaxConcurrent), a missing mode is replicated;
//   - RestartPolicy, UpdateConfig, RollbackConfig and StopGracePeriod get Swarm's
//     defaults where unset; EndpointSpec mode "" is vip, port protocol "" is tcp and
//     publish mode "" is ingress; a bind mount's propagation "" is rprivate;
//   - order-free lists (ports, networks and their aliases, mounts, secrets, configs,
//     constraints, platforms, capabilities, groups, ulimits) are sorted;
//   - the deprecated service-level Networks move to TaskTemplate.Networks.
//
// nil and empty maps, slices and structs are left as they are: DiffService treats them
// as equal, as Swarm does.
func NormalizeService(s swarm.ServiceSpec) swarm.ServiceSpec {
	n := deepCopy(s)
	n.Labels = withoutCapstanLabels(n.Labels)
	// Old deployers (DAB, API < 1.29) used the deprecated service-level Networks.
	if len(n.TaskTemplate.Networks) == 0 && len(n.Networks) > 0 {
		n.TaskTemplate.Networks = n.Networks
	}
	n.Networks = nil

	t := &n.TaskTemplate
	t.ForceUpdate = 0
	if t.Runtime == "" {
		t.Runtime = swarm.RuntimeContainer
	}
	if t.Runtime == swarm.RuntimeContainer && t.ContainerSpec == nil {
		t.ContainerSpec = &swarm.ContainerSpec{}
	}
	if t.ContainerSpec != nil {
		normalizeContainer(t.ContainerSpec)
	}
	if r := t.Resources; r != nil && r.Reservations != nil {
		sort.SliceStable(r.Reservations.GenericResources, func(i, j int) bool {
			return genericKey(r.Reservations.GenericResources[i]) < genericKey(r.Reservations.GenericResources[j])
		})
	}
	t.RestartPolicy = normalizeRestart(t.RestartPolicy)
	if p := t.Placement; p != nil {
		sort.Strings(p.Constraints)
		sort.Slice(p.Platforms, func(i, j int) bool {
			a, b := p.Platforms[i], p.Platforms[j]
			return a.OS+"/"+a.Architecture < b.OS+"/"+b.Architecture
		})
	}
	for i := range t.Networks {
		sort.Strings(t.Networks[i].Aliases)
	}
	sort.SliceStable(t.Networks, func(i, j int) bool { return t.Networks[i].Target < t.Networks[j].Target })

	n.Mode = normalizeMode(n.Mode)
	n.UpdateConfig = normalizeUpdate(n.UpdateConfig)
	n.RollbackConfig = normalizeUpdate(n.RollbackConfig)
	n.EndpointSpec = normalizeEndpoint(n.EndpointSpec)
	return n
}

func normalizeContainer(c *swarm.ContainerSpec) {
	c.Image = NormalizeImage(c.Image)
	// Swarm stores enumerations, so any case the client sends reads back in lower case.
	c.Isolation = container.Isolation(strings.ToLower(string(c.Isolation)))
	if c.Isolation == "" {
		c.Isolation = container.IsolationDefault
	}
	if c.StopGracePeriod == nil {
		d := defaultStopGracePeriod
		c.StopGracePeriod = &d
	}
	sort.Strings(c.CapabilityAdd)
	sort.Strings(c.CapabilityDrop)
	sort.Strings(c.Groups)
	sort.SliceStable(c.Ulimits, func(i, j int) bool { return c.Ulimits[i].Name < c.Ulimits[j].Name })
	for i := range c.Mounts {
		m := &c.Mounts[i]
		m.Consistency = ""
		m.Type = mount.Type(strings.ToLower(string(m.Type)))
		if m.BindOptions != nil {
			m.BindOptions.Propagation = mount.Propagation(strings.ToLower(string(m.BindOptions.Propagation)))
		}
		if m.Type == mount.TypeBind {
			if m.BindOptions == nil {
				m.BindOptions = &mount.BindOptions{}
			}
			if m.BindOptions.Propagation == "" {
				m.BindOptions.Propagation = defaultBindPropagation
			}
			// Swarm's API has no field for these: they never reach the stored spec.
			m.BindOptions.CreateMountpoint = false
			m.BindOptions.ReadOnlyNonRecursive = false
			m.BindOptions.ReadOnlyForceRecursive = false
		}
	}
	sort.SliceStable(c.Mounts, func(i, j int) bool { return c.Mounts[i].Target < c.Mounts[j].Target })
	for _, r := range c.Secrets {
		if r != nil {
			r.SecretID = ""
		}
	}
	sort.SliceStable(c.Secrets, func(i, j int) bool { return secretRefKey(c.Secrets[i]) < secretRefKey(c.Secrets[j]) })
	for _, r := range c.Configs {
		if r != nil {
			r.ConfigID = ""
		}
	}
	sort.SliceStable(c.Configs, func(i, j int) bool { return configRefKey(c.Configs[i]) < configRefKey(c.Configs[j]) })
}

func normalizeRestart(p *swarm.RestartPolicy) *swarm.RestartPolicy {
	if p == nil {
		p = &swarm.RestartPolicy{}
	}
	if p.Condition == "" {
		p.Condition = swarm.RestartPolicyConditionAny
	}
	if p.Delay == nil {
		d := defaultRestartDelay
		p.Delay = &d
	}
	if p.MaxAttempts == nil {
		var zero uint64
		p.MaxAttempts = &zero
	}
	if p.Window == nil {
		var zero time.Duration
		p.Window = &zero
	}
	return p
}

func normalizeMode(m swarm.ServiceMode) swarm.ServiceMode {
	switch {
	case m.Global != nil:
		return swarm.ServiceMode{Global: &swarm.GlobalService{}}
	case m.GlobalJob != nil:
		return swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}}
	case m.ReplicatedJob != nil:
		j := *m.ReplicatedJob
		if j.MaxConcurrent == nil {
			one := uint64(1)
			j.MaxConcurrent = &one
		}
		if j.TotalCompletions == nil {
			total := *j.MaxConcurrent
			j.TotalCompletions = &total
		}
		return swarm.ServiceMode{ReplicatedJob: &j}
	}
	replicas := uint64(1)
	if m.Replicated != nil && m.Replicated.Replicas != nil {
		replicas = *m.Replicated.Replicas
	}
	return swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}}
}

func normalizeUpdate(u *swarm.UpdateConfig) *swarm.UpdateConfig {
	if u == nil {
		u = &swarm.UpdateConfig{Parallelism: 1}
	}
	if u.FailureAction == "" {
		u.FailureAction = swarm.UpdateFailureActionPause
	}
	if u.Order == "" {
		u.Order = swarm.UpdateOrderStopFirst
	}
	if u.Monitor == 0 {
		u.Monitor = defaultUpdateMonitor
	}
	return u
}

func normalizeEndpoint(e *swarm.EndpointSpec) *swarm.EndpointSpec {
	if e == nil {
		e = &swarm.EndpointSpec{}
	}
	e.Mode = swarm.ResolutionMode(strings.ToLower(string(e.Mode)))
	if e.Mode == "" {
		e.Mode = swarm.ResolutionModeVIP
	}
	for i := range e.Ports {
		p := &e.Ports[i]
		p.Protocol = swarm.PortConfigProtocol(strings.ToLower(string(p.Protocol)))
		p.PublishMode = swarm.PortConfigPublishMode(strings.ToLower(string(p.PublishMode)))
		if p.Protocol == "" {
			p.Protocol = swarm.PortConfigProtocolTCP
		}
		if p.PublishMode == "" {
			p.PublishMode = swarm.PortConfigPublishModeIngress
		}
	}
	sort.SliceStable(e.Ports, func(i, j int) bool { return portSortKey(e.Ports[i]) < portSortKey(e.Ports[j]) })
	return e
}

// modeKind names a service mode; Swarm cannot change it in place.
func modeKind(m swarm.ServiceMode) string {
	switch {
	case m.Global != nil:
		return "global"
	case m.GlobalJob != nil:
		return "global-job"
	case m.ReplicatedJob != nil:
		return "replicated-job"
	}
	return "replicated"
}

// NormalizeImage gives an image reference its familiar name and default tag, as the
// Docker client does before creating or updating a service ("docker.io/library/nginx"
// and "nginx" both become "nginx:latest"). A reference that does not parse is returned
// unchanged.
func NormalizeImage(image string) string {
	if v, ok := normalizedImages.Load(image); ok {
		return v.(string)
	}
	out := image
	if named, err := reference.ParseNormalizedNamed(image); err == nil {
		out = reference.FamiliarString(reference.TagNameOnly(named))
	}
	// Parsing takes regular expressions, and every reconcile normalizes the same few
	// image names on both sides; the answer for a string never changes.
	if normalizedImageCount.Add(1) <= maxNormalizedImages {
		normalizedImages.Store(image, out)
	}
	return out
}

// normalizedImages memoizes NormalizeImage, bounded so a stream of distinct names (a
// registry per commit) cannot grow it without end.
var (
	normalizedImages     sync.Map
	normalizedImageCount atomic.Int64
)

const maxNormalizedImages = 4096

// stripDigest removes a digest pin ("nginx:1.25@sha256:…" → "nginx:1.25"), giving the
// bare name its default tag as the client does when it pins.
func stripDigest(image string) string {
	base, _, ok := strings.Cut(image, "@")
	if !ok {
		return image
	}
	return NormalizeImage(base)
}

func hasDigest(image string) bool { return strings.Contains(image, "@") }

// NormalizeNetwork returns a copy of n holding only what a user declares, in canonical
// form: driver "" is overlay, the IPAM driver "" is default, dev.capstan.* labels, the
// scope and the options Swarm's allocator adds are dropped. Subnets and gateways the
// allocator picked are not in the user's declaration; DiffNetwork ignores them unless
// the desired network sets them.
func NormalizeNetwork(in network.CreateOptions) network.CreateOptions {
	n := deepCopy(in)
	n.Labels = withoutCapstanLabels(n.Labels)
	n.Scope = ""
	if n.Driver == "" {
		n.Driver = defaultNetworkDriver
	}
	if n.IPAM == nil {
		n.IPAM = &network.IPAM{}
	}
	if n.IPAM.Driver == "" {
		n.IPAM.Driver = defaultIPAMDriver
	}
	sort.SliceStable(n.IPAM.Config, func(i, j int) bool { return n.IPAM.Config[i].Subnet < n.IPAM.Config[j].Subnet })
	if n.ConfigFrom != nil && n.ConfigFrom.Network == "" {
		n.ConfigFrom = nil
	}
	return n
}

// withoutCapstanLabels drops capstan's own dev.capstan.* labels: they record what
// capstan did, not what the user declared, and are compared by BuildPlan separately.
func withoutCapstanLabels(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		if !strings.HasPrefix(k, "dev.capstan.") {
			out[k] = v
		}
	}
	return out
}

func secretRefKey(r *swarm.SecretReference) string {
	if r == nil {
		return ""
	}
	if r.File != nil {
		return r.File.Name + "\x00" + r.SecretName
	}
	return "\x00" + r.SecretName
}

func configRefKey(r *swarm.ConfigReference) string {
	if r == nil {
		return ""
	}
	if r.File != nil {
		return r.File.Name + "\x00" + r.ConfigName
	}
	return "\x00" + r.ConfigName
}

func portSortKey(p swarm.PortConfig) string {
	return fmt.Sprintf("%010d/%s/%010d/%s/%s", p.TargetPort, p.Protocol, p.PublishedPort, p.PublishMode, p.Name)
}

func genericKey(g swarm.GenericResource) string {
	switch {
	case g.NamedResourceSpec != nil:
		return g.NamedResourceSpec.Kind + "=" + g.NamedResourceSpec.Value
	case g.DiscreteResourceSpec != nil:
		return g.DiscreteResourceSpec.Kind + "=" + strconv.FormatInt(g.DiscreteResourceSpec.Value, 10)
	}
	return ""
}

// deepCopy copies v and everything it points to, so normalizing never modifies what
// the caller holds.
func deepCopy[T any](v T) T { return resource.DeepCopy(v) }

// copyResource copies r with its spec, so plan changes never alias the input sets.
func copyResource(r resource.Resource) *resource.Resource {
	c := r
	switch {
	case r.Service != nil:
		s := deepCopy(*r.Service)
		c.Service = &s
	case r.Network != nil:
		n := deepCopy(*r.Network)
		c.Network = &n
	case r.Secret != nil:
		s := deepCopy(*r.Secret)
		c.Secret = &s
	case r.Config != nil:
		s := deepCopy(*r.Config)
		c.Config = &s
	case r.Route != nil:
		rt := deepCopy(*r.Route)
		c.Route = &rt
	case r.SLBListener != nil:
		l := deepCopy(*r.SLBListener)
		c.SLBListener = &l
	case r.VServerGroup != nil:
		g := deepCopy(*r.VServerGroup)
		c.VServerGroup = &g
	}
	if r.Status != nil {
		st := *r.Status
		c.Status = &st
	}
	return &c
}
