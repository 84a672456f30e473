package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/capstan-dev/capstan/resource"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Builders of desired and live objects for plan tests. Desired specs are shaped like
// docker/cli convert output; stored() turns one into what Swarm returns for it
// (ServiceList, insertDefaults=false), as captured from Engine 20.10 in
// testdata/normalize. They are fakes of pure data, not of behaviour.

const (
	testRevision  = "main@sha1:0123456789abcdef0123456789abcdef01234567"
	testRevision2 = "main@sha1:89abcdef0123456789abcdef0123456789abcdef"
	testInstance  = resource.DefaultInstance
)

func stackDoc(name string, mut ...func(*resource.Stack)) resource.Stack {
	s := resource.Stack{Name: name, Source: "stacks/" + name + ".yaml", Prune: true, SelfHeal: true, ResolveImage: resource.ResolveChanged}
	for _, m := range mut {
		m(&s)
	}
	return s
}

// stamp adds the labels capstan's manifests loader puts on every desired object.
func stamp(r resource.Resource, revision string) resource.Resource {
	labels := map[string]string{}
	for k, v := range r.Labels() {
		labels[k] = v
	}
	labels[resource.LabelManagedBy] = testInstance
	labels[resource.LabelRevision] = revision
	setLabels(&r, labels)
	labels[resource.LabelSpecHash] = resource.SpecHash(r)
	return r
}

func setLabels(r *resource.Resource, labels map[string]string) {
	switch {
	case r.Service != nil:
		r.Service.Labels = labels
	case r.Network != nil:
		r.Network.Labels = labels
	case r.Secret != nil:
		r.Secret.Labels = labels
	case r.Config != nil:
		r.Config.Labels = labels
	}
}

// service is a desired service as convert makes it for `image:` plus `networks: [default]`.
func service(stack, name string, mut ...func(*swarm.ServiceSpec)) resource.Resource {
	full := stack + "_" + name
	ns := map[string]string{resource.LabelNamespace: stack}
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: full, Labels: map[string]string{resource.LabelNamespace: stack, resource.LabelImage: "nginx:1.25"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "nginx:1.25", Labels: ns, Privileges: &swarm.Privileges{}},
			Resources:     &swarm.ResourceRequirements{},
			Placement:     &swarm.Placement{},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: stack + "_default", Aliases: []string{name}}},
		},
		EndpointSpec: &swarm.EndpointSpec{},
	}
	spec.Mode.Replicated = &swarm.ReplicatedService{}
	for _, m := range mut {
		m(&spec)
	}
	return stamp(resource.Resource{Key: resource.ServiceKey(full), Stack: stack, Source: "stacks/" + stack + "/compose.yml", Service: &spec}, testRevision)
}

func overlay(stack, name string, mut ...func(*network.CreateOptions)) resource.Resource {
	full := stack + "_" + name
	n := network.CreateOptions{Driver: "overlay", Labels: map[string]string{resource.LabelNamespace: stack}}
	for _, m := range mut {
		m(&n)
	}
	return stamp(resource.Resource{Key: resource.NetworkKey(full), Stack: stack, Source: "stacks/" + stack + "/compose.yml", Network: &n}, testRevision)
}

func secret(stack, name, data string) resource.Resource {
	full := stack + "_" + name
	s := swarm.SecretSpec{Annotations: swarm.Annotations{Name: full, Labels: map[string]string{resource.LabelNamespace: stack}}, Data: []byte(data)}
	return stamp(resource.Resource{Key: resource.SecretKey(full), Stack: stack, Source: "stacks/" + stack + "/compose.yml", Secret: &s}, testRevision)
}

func config(stack, name, data string) resource.Resource {
	full := stack + "_" + name
	c := swarm.ConfigSpec{Annotations: swarm.Annotations{Name: full, Labels: map[string]string{resource.LabelNamespace: stack}}, Data: []byte(data)}
	return stamp(resource.Resource{Key: resource.ConfigKey(full), Stack: stack, Source: "stacks/" + stack + "/compose.yml", Config: &c}, testRevision)
}

func replicas(n uint64) func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) {
		s.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}
}

func env(kv ...string) func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, kv...)
	}
}

func usesSecret(name, target string) func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Secrets = append(s.TaskTemplate.ContainerSpec.Secrets, &swarm.SecretReference{
			SecretName: name, File: &swarm.SecretReferenceFileTarget{Name: target, UID: "0", GID: "0", Mode: 0o444}})
	}
}

func usesConfig(name, target string) func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Configs = append(s.TaskTemplate.ContainerSpec.Configs, &swarm.ConfigReference{
			ConfigName: name, File: &swarm.ConfigReferenceFileTarget{Name: target, UID: "0", GID: "0", Mode: 0o444}})
	}
}

func global() func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) { s.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}} }
}

func onNetwork(target string) func(*swarm.ServiceSpec) {
	return func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: target})
	}
}

var nextID int

// stored returns r as the swarm sink observes it after capstan created it from r: what
// Engine 20.10 stores and returns without insertDefaults (see testdata/normalize).
func stored(r resource.Resource) resource.Resource {
	l := *copyResource(r)
	l.Source = ""
	nextID++
	l.ID = fmt.Sprintf("id%04d", nextID)
	l.Version = uint64(10 + nextID)
	switch {
	case l.Service != nil:
		s := l.Service
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		t := &s.TaskTemplate
		t.Runtime = swarm.RuntimeContainer
		c := t.ContainerSpec
		c.Image = NormalizeImage(c.Image) // the client tags it
		if c.Isolation == "" {
			c.Isolation = container.IsolationDefault
		}
		for _, ref := range c.Secrets {
			ref.SecretID = "sid-" + ref.SecretName
		}
		for _, ref := range c.Configs {
			ref.ConfigID = "cid-" + ref.ConfigName
		}
		if rp := t.RestartPolicy; rp != nil && rp.MaxAttempts == nil {
			var zero uint64
			rp.MaxAttempts = &zero
		}
		if s.Mode.Replicated != nil && s.Mode.Replicated.Replicas == nil {
			one := uint64(1)
			s.Mode.Replicated.Replicas = &one
		}
		for _, u := range []*swarm.UpdateConfig{s.UpdateConfig, s.RollbackConfig} {
			if u != nil {
				if u.FailureAction == "" {
					u.FailureAction = swarm.UpdateFailureActionPause
				}
				if u.Order == "" {
					u.Order = swarm.UpdateOrderStopFirst
				}
			}
		}
		if s.EndpointSpec == nil {
			s.EndpointSpec = &swarm.EndpointSpec{}
		}
		if s.EndpointSpec.Mode == "" {
			s.EndpointSpec.Mode = swarm.ResolutionModeVIP
		}
		for i := range s.EndpointSpec.Ports {
			p := &s.EndpointSpec.Ports[i]
			if p.Protocol == "" {
				p.Protocol = swarm.PortConfigProtocolTCP
			}
			if p.PublishMode == "" {
				p.PublishMode = swarm.PortConfigPublishModeIngress
			}
		}
	case l.Network != nil:
		n := l.Network
		n.Scope = "swarm"
		if n.Driver == "" {
			n.Driver = "overlay"
		}
		if n.IPAM == nil {
			n.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.7.0/24", Gateway: "10.0.7.1"}}}
		}
		if n.Options == nil {
			n.Options = map[string]string{}
		}
		n.Options["com.docker.network.driver.overlay.vxlanid_list"] = "4102"
	case l.Secret != nil:
		l.Secret.Data = nil // never returned
	}
	return l
}

func newSet(stacks []resource.Stack, rs ...resource.Resource) *resource.Set {
	s := resource.NewSet()
	for _, st := range stacks {
		s.Stacks[st.Name] = st
	}
	for _, r := range rs {
		s.Resources[r.Key] = r
	}
	return s
}

// liveOf is the live set right after desired was applied by capstan.
func liveOf(desired *resource.Set) *resource.Set {
	l := resource.NewSet()
	for k, r := range desired.Resources {
		if !r.External {
			l.Resources[k] = stored(r)
		}
	}
	return l
}

// applyPlan is what a faithful apply would leave in live: a pure stand-in used to check
// that a second plan is empty.
func applyPlan(t *testing.T, live *resource.Set, p Plan) *resource.Set {
	t.Helper()
	out := resource.NewSet()
	for k, r := range live.Resources {
		out.Resources[k] = r
	}
	for _, c := range p.Changes {
		switch c.Action {
		case NoOp:
		case Delete:
			if _, ok := out.Resources[c.Key]; !ok {
				t.Fatalf("apply: delete of %s, which is not live", c.Key)
			}
			delete(out.Resources, c.Key)
		default:
			if c.After == nil {
				t.Fatalf("apply: %c %s without After", c.Action, c.Key)
			}
			out.Resources[c.Key] = stored(*c.After)
		}
	}
	return out
}

// summarize renders a plan's changes as "glyph key (reason)" lines, for compact
// assertions.
func summarize(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, fmt.Sprintf("%c %s (%s)", c.Action, c.Key, c.Reason))
	}
	return out
}

func diffPaths(diffs []FieldDiff) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, d.Path)
	}
	sort.Strings(out)
	return out
}

func findChange(t *testing.T, p Plan, key string) Change {
	t.Helper()
	for _, c := range p.Changes {
		if c.Key.String() == key {
			return c
		}
	}
	t.Fatalf("no change for %s in plan:\n%s", key, strings.Join(summarize(p), "\n"))
	return Change{}
}

func dur(d time.Duration) *time.Duration { return &d }

func u64(n uint64) *uint64 { return &n }
