package swarm

import (
	"context"
	"fmt"
	"sort"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/capstan-dev/capstan/resource"
)

// vxlanOption is added to every overlay network by Swarm's allocator; it is never part of
// what a user asked for.
const vxlanOption = "com.docker.network.driver.overlay.vxlanid_list"

// Observe reads every swarm-scoped object, owned by capstan or not, in a fixed number of
// API requests whatever the number of stacks and services: one list each of services
// (with task counts), networks, secrets, configs and nodes, plus the version-negotiation
// ping on a client's first request. The only extra request is a one-time inspect of a
// network ID the list does not show (the swarm-side ID of a predefined network such as
// "host") that a service of this instance uses; its name is then cached. Services of
// other owners keep such IDs: capstan never compares their networks, so resolving them
// would only cost a request per run.
//
// The returned Set has no Stacks (stack settings only exist on the desired side);
// Resource.Stack comes from the com.docker.stack.namespace label.
func (s *Sink) Observe(ctx context.Context) (*resource.Set, error) {
	services, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Status: true})
	if err != nil {
		return nil, fmt.Errorf("swarm: list services: %w", err)
	}
	networks, err := s.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm: list networks: %w", err)
	}
	secrets, err := s.cli.SecretList(ctx, swarm.SecretListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm: list secrets: %w", err)
	}
	configs, err := s.cli.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm: list configs: %w", err)
	}
	nodes, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm: list nodes: %w", err)
	}

	names := make(map[string]string, len(networks))
	for _, n := range networks {
		names[n.ID] = n.Name
	}
	if err := s.resolveUnlistedNetworks(ctx, services, names); err != nil {
		return nil, err
	}

	set := resource.NewSet()
	add := func(r resource.Resource) error {
		if prev, ok := set.Resources[r.Key]; ok {
			return fmt.Errorf("swarm: two objects are named %s (IDs %s and %s); Swarm allows this for networks, capstan cannot tell them apart: remove one", r.Key, prev.ID, r.ID)
		}
		set.Resources[r.Key] = r
		return nil
	}
	for _, svc := range services {
		if err := add(liveService(svc, names)); err != nil {
			return nil, err
		}
	}
	for _, n := range networks {
		if !isSwarmNetwork(n) {
			continue
		}
		if err := add(liveNetwork(n)); err != nil {
			return nil, err
		}
	}
	for _, sec := range secrets {
		spec := sec.Spec
		if err := add(resource.Resource{Key: resource.SecretKey(spec.Name), Stack: spec.Labels[resource.LabelNamespace],
			Secret: &spec, ID: sec.ID, Version: sec.Version.Index}); err != nil {
			return nil, err
		}
	}
	for _, cfg := range configs {
		spec := cfg.Spec
		if err := add(resource.Resource{Key: resource.ConfigKey(spec.Name), Stack: spec.Labels[resource.LabelNamespace],
			Config: &spec, ID: cfg.ID, Version: cfg.Version.Index}); err != nil {
			return nil, err
		}
	}

	live := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		live = append(live, liveNode(n))
	}
	sort.Slice(live, func(i, j int) bool {
		if live[i].Hostname != live[j].Hostname {
			return live[i].Hostname < live[j].Hostname
		}
		return live[i].ID < live[j].ID
	})
	ports := make(map[string][]Port)
	for _, svc := range services {
		for _, pc := range svc.Endpoint.Ports {
			ports[svc.Spec.Name] = append(ports[svc.Spec.Name], Port{Target: pc.TargetPort, Published: pc.PublishedPort,
				Protocol: string(pc.Protocol), PublishMode: string(pc.PublishMode)})
		}
	}
	s.mu.Lock()
	s.nodes, s.ports = live, ports
	s.mu.Unlock()
	return set, nil
}

// resolveUnlistedNetworks adds to names the network IDs services refer to that the
// network list does not show, from the cache or by one inspect each.
func (s *Sink) resolveUnlistedNetworks(ctx context.Context, services []swarm.Service, names map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range services {
		if svc.Spec.Labels[resource.LabelManagedBy] != s.instance {
			continue
		}
		for _, att := range append(append([]swarm.NetworkAttachmentConfig(nil), svc.Spec.TaskTemplate.Networks...), svc.Spec.Networks...) {
			id := att.Target
			if _, ok := names[id]; ok {
				continue
			}
			if name, ok := s.netNames[id]; ok {
				names[id] = name
				continue
			}
			n, err := s.cli.NetworkInspect(ctx, id, network.InspectOptions{Scope: "swarm"})
			if cerrdefs.IsNotFound(err) {
				continue // gone meanwhile: the ID stays, as for any unknown network
			}
			if err != nil {
				return fmt.Errorf("swarm: service %s uses network %s, which the network list does not show: inspect: %w", svc.Spec.Name, id, err)
			}
			s.netNames[id] = n.Name
			names[id] = n.Name
		}
	}
	return nil
}

// isSwarmNetwork keeps the networks capstan could manage: swarm scope, not the routing
// mesh. Local networks (bridge, host, docker_gwbridge) are none of a stack's business.
func isSwarmNetwork(n network.Summary) bool {
	return n.Scope == "swarm" && !n.Ingress && n.Name != "ingress"
}

// liveService turns a listed service into a Resource, with network IDs replaced by names.
func liveService(svc swarm.Service, networkNames map[string]string) resource.Resource {
	spec := svc.Spec
	spec.TaskTemplate.Networks = namedNetworks(spec.TaskTemplate.Networks, networkNames)
	// Deprecated in the API, but DAB deploys (Docker 1.12–19.03) wrote it and Engine 20.10
	// still returns it.
	spec.Networks = namedNetworks(spec.Networks, networkNames)
	r := resource.Resource{
		Key:     resource.ServiceKey(spec.Name),
		Stack:   spec.Labels[resource.LabelNamespace],
		Service: &spec,
		ID:      svc.ID,
		Version: svc.Version.Index,
	}
	st := &resource.ServiceStatus{}
	if svc.ServiceStatus != nil {
		st.RunningTasks = svc.ServiceStatus.RunningTasks
		st.DesiredTasks = svc.ServiceStatus.DesiredTasks
	}
	if svc.UpdateStatus != nil {
		st.UpdateState = string(svc.UpdateStatus.State)
		st.UpdateMessage = svc.UpdateStatus.Message
	}
	r.Status = st
	return r
}

// namedNetworks copies atts with each Target (a network ID, as Swarm stores it) replaced
// by the network's name. An ID with no known name is kept as is.
func namedNetworks(atts []swarm.NetworkAttachmentConfig, names map[string]string) []swarm.NetworkAttachmentConfig {
	if atts == nil {
		return nil
	}
	out := make([]swarm.NetworkAttachmentConfig, len(atts))
	for i, a := range atts {
		if name, ok := names[a.Target]; ok {
			a.Target = name
		}
		out[i] = a
	}
	return out
}

// liveNetwork turns a listed swarm network into the CreateOptions that would create it,
// minus what the allocator adds on its own (the VXLAN ID option). IPAM is kept as listed,
// allocator-chosen subnets and gateways included.
func liveNetwork(n network.Summary) resource.Resource {
	opts := network.CreateOptions{
		Driver:     n.Driver,
		Scope:      n.Scope,
		Internal:   n.Internal,
		Attachable: n.Attachable,
		Ingress:    n.Ingress,
		ConfigOnly: n.ConfigOnly,
		Labels:     n.Labels,
	}
	if n.EnableIPv6 {
		v := true
		opts.EnableIPv6 = &v
	}
	ipam := n.IPAM
	opts.IPAM = &ipam
	if n.ConfigFrom.Network != "" {
		ref := n.ConfigFrom
		opts.ConfigFrom = &ref
	}
	for k, v := range n.Options {
		if k == vxlanOption {
			continue
		}
		if opts.Options == nil {
			opts.Options = map[string]string{}
		}
		opts.Options[k] = v
	}
	return resource.Resource{
		Key:     resource.NetworkKey(n.Name),
		Stack:   n.Labels[resource.LabelNamespace],
		Network: &opts,
		ID:      n.ID,
	}
}

func liveNode(n swarm.Node) Node {
	return Node{
		ID:           n.ID,
		Hostname:     n.Description.Hostname,
		Role:         string(n.Spec.Role),
		Availability: string(n.Spec.Availability),
		State:        string(n.Status.State),
		Addr:         n.Status.Addr,
		Labels:       n.Spec.Labels,
	}
}
