// Package slb is capstan's sink for Alibaba Cloud Server Load Balancer (SLB, also called
// CLB): it turns Route documents into listeners and VServer groups, reads what SLB has,
// and carries out planned changes through the unmodified alibaba-cloud-sdk-go
// services/slb client. SDK types never leave this package.
//
// # From a Route to SLB objects
//
// Expand replaces each desired Route with the two objects it stands for, once the Swarm
// side has been observed:
//
//   - a VServer group named capstan/<instance>/<route> holding every eligible Swarm
//     node (role and labels as the route's backends select; Ready and Active only) as
//     its ECS instance (node label dev.capstan.ecs-instance-id) at the port Swarm
//     published for the route's targetPort, with the route's weight;
//   - a listener on the route's port and protocol, with the route's settings and SLB's
//     documented defaults written out, Description capstan/<instance>/<route>,
//     forwarding to that group, running.
//
// The published port is the service's explicit one when the source declares it, else
// the one live Swarm assigned. When the service does not exist yet (the same plan
// creates it) the plan says so in a warning and apply reads the port once Swarm has
// published it (Options.Ports).
//
// # Ownership
//
// SLB has no tags on listeners or groups, so capstan marks what it creates with the
// marker capstan/<instance>/<route> (resource.SLBMarker) in the listener Description
// and as the group name. Anything without this instance's marker is never changed or
// deleted: a listener on a port a route wants, with another description, is returned
// unowned and the plan reports a conflict.
//
// # What Observe reads
//
// Observe reads, per region: the load balancers of the region (DescribeLoadBalancers,
// one call per 100), their listeners (DescribeLoadBalancerListeners, one call per 10
// load balancers) and, for each load balancer that a route names, that Options lists
// or that holds a listener of this instance, its VServer groups (DescribeVServerGroups,
// one call). Listing the region is how capstan finds what it owns on a load balancer
// no route names any more, so removing the last route of a load balancer still deletes
// its listener and group. The regions are those of the routes, of Options.LoadBalancers
// and Options.Regions.
//
// The members of this instance's groups come from DescribeVServerGroupAttribute, one
// call per group, the first time. Afterwards the sink reuses what it read, or what its
// own last write left, for as long as SLB's ServerCount of the group still matches and
// for at most Options.BackendCacheTTL. A no-op reconcile of one load balancer therefore
// costs three calls however many routes it carries, and writes nothing. The cost of
// that economy: a weight or port someone edits by hand in the console, without changing
// the number of members, is noticed within BackendCacheTTL rather than at once. A fresh
// process (capstan diff, capstan apply) reads every member.
//
// # How Apply writes
//
// One change at a time, waiting after each listener write until SLB reports a settled
// status, so no two changes on a load balancer overlap. Listeners follow SLB's state
// machine: create (stopped) then start; set attributes (configuring, then back); stop
// then delete. Backends change in batches of at most 20. The SDK's own retry is off:
// throttling, *Busy and *Configuring answers, 5xx and transport errors are retried with
// capped exponential backoff and jitter, and every write is retried only after reading
// the object again, so a write that succeeded but whose answer was lost is not repeated.
// Rejected credentials (SignatureDoesNotMatch, InvalidAccessKeyId.NotFound) are never
// retried and wrap ErrAuth.
package slb
