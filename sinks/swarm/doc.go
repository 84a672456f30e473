// Package swarm is capstan's Docker Swarm sink: it reads the live swarm into a
// resource.Set (Observe), carries out planned changes (Apply) and reports how far a
// service has rolled out (ServiceStatus), through github.com/docker/docker/client with
// the API version negotiated (Engine 20.10 speaks API 1.41; nothing newer is needed).
//
// # Cost
//
// Observe sends a fixed number of requests whatever the size of the swarm: one list each
// of services (with task counts), networks, secrets, configs and nodes — 5, plus the
// version-negotiation ping (HEAD /_ping) on a client's very first request, so 6 at most
// for a fresh client. The single exception: a service attached to a predefined network
// ("host", "bridge") refers to it by a swarm-side ID that the network list does not show;
// the first Observe of a Sink inspects each such ID once (at most 2, whatever the number
// of services) and caches the name. ServiceStatus sends 2 (the service, its tasks).
//
// # Live shapes
//
// Observe returns what the Engine stores, raw (ServiceList never inserts defaults), with
// one rewrite: network references are names. reconcile normalizes the rest. For a spec
// capstan created, Engine 20.10 returns (testdata/live-shapes.json is the full example):
//
// Services (Resource.Service, a swarm.ServiceSpec):
//   - TaskTemplate.Networks[].Target and the deprecated Spec.Networks[].Target: Swarm
//     stores network IDs; Observe maps them back to names (an unknown ID is left as is).
//     Aliases are kept as sent.
//   - TaskTemplate.Runtime is "container" and ContainerSpec.Isolation "default", though
//     capstan sends neither.
//   - Mode.Replicated.Replicas is filled (1) when sent nil.
//   - What was sent as nil stays absent (Resources, Placement, RestartPolicy,
//     UpdateConfig, EndpointSpec...): defaults are not inserted. But an EndpointSpec that
//     is sent comes back with Mode "vip" and its ports with Protocol "tcp" (PublishMode
//     "ingress" when sent empty), and a RestartPolicy sent as {Condition: any} comes
//     back with MaxAttempts 0. Specs created by other tools (docker service create) carry
//     more filled-in values (Init false, DNSConfig {}, Resources {Limits {}, Reservations {}}).
//   - ContainerSpec.Image: an untagged image gets ":latest" from the client library.
//     The registry is never queried, so no "@sha256:" digest is pinned by capstan (images
//     pinned by docker stack deploy keep theirs).
//   - Secret and config references carry SecretID/ConfigID next to the names.
//   - TaskTemplate.ForceUpdate is the live counter (docker service update --force).
//   - Labels include dev.capstan.managed-by, dev.capstan.spec-hash and the stack
//     namespace on objects capstan created (see Apply).
//   - Resource.Status: RunningTasks/DesiredTasks from Swarm's ServiceStatus (running
//     tasks of any spec version), UpdateState/UpdateMessage from UpdateStatus (""
//     when no update ran).
//
// Networks (Resource.Network, a network.CreateOptions): only swarm-scoped networks, never
// "ingress" nor local ones. Driver, Scope ("swarm"), Internal, Attachable, ConfigOnly,
// ConfigFrom (nil unless set), EnableIPv6 (nil unless true), Labels as listed; IPAM as
// listed, so it holds the allocator's choice — {Driver: "default", Config: [{Subnet,
// Gateway}]} — even when none was asked for; Options without the allocator's
// com.docker.network.driver.overlay.vxlanid_list (nil when nothing else is left).
// Version is 0 (networks have none in the API). A network removed while tasks still
// detach stays listed for a few seconds on Engine 20.10; Apply waits that out.
//
// Secrets (Resource.Secret): the spec as listed — name, labels, driver, templating; Data
// is never returned. Configs (Resource.Config): the spec including Data.
//
// Nodes are not resources: Observe keeps them for Nodes (the SLB sink's backends).
package swarm
