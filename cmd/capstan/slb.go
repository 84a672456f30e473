package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
	slbsink "github.com/capstan-dev/capstan/sinks/slb"
	swarmsink "github.com/capstan-dev/capstan/sinks/swarm"
)

// Environment variables holding SLB credentials: the SDK's own names, each also readable
// from a file named by <NAME>_FILE (a Docker secret).
const (
	envAccessKeyID     = "ALIBABA_CLOUD_ACCESS_KEY_ID"
	envAccessKeySecret = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
	envSecurityToken   = "ALIBABA_CLOUD_SECURITY_TOKEN"
)

// slbFlags say where SLB is and what to look at.
type slbFlags struct {
	endpoint      string
	regions       []string
	loadBalancers []string
}

func (f *slbFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoint, "slb-endpoint", "", "SLB API endpoint URL (default: the SDK's regional endpoint over HTTPS); http://127.0.0.1:PORT for slbemu")
	cmd.Flags().StringSliceVar(&f.regions, "slb-region", nil, "region to search for listeners this instance owns, besides the regions routes name (repeatable)")
	cmd.Flags().StringArrayVar(&f.loadBalancers, "slb-load-balancer", nil, "ID@REGION of a load balancer to observe even when no route names it (repeatable)")
}

// configured reports whether the user asked for SLB at all: an SLB flag or credentials in
// the environment. Without that, routes are dropped with a warning, as before SLB
// support existed.
func (f slbFlags) configured(getenv func(string) string) bool {
	if f.endpoint != "" || len(f.regions) > 0 || len(f.loadBalancers) > 0 {
		return true
	}
	return getenv(envAccessKeyID) != "" || getenv(envAccessKeyID+"_FILE") != ""
}

// options turns the flags and environment into sink options; nil when SLB is not
// configured. Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (and
// ALIBABA_CLOUD_SECURITY_TOKEN), or the files their _FILE variants name; with none of
// them, from the SDK's default chain (its config files, OIDC, the ECS RAM role).
func (f slbFlags) options(instance string, getenv func(string) string, readFile func(string) ([]byte, error)) (*slbsink.Options, error) {
	if !f.configured(getenv) {
		return nil, nil
	}
	opts := &slbsink.Options{Instance: instance, Endpoint: f.endpoint}
	for _, r := range f.regions {
		if r = strings.TrimSpace(r); r != "" {
			opts.Regions = append(opts.Regions, r)
		}
	}
	for _, s := range f.loadBalancers {
		id, region, ok := strings.Cut(s, "@")
		if !ok || id == "" || region == "" {
			return nil, fmt.Errorf("--slb-load-balancer %q: want ID@REGION, e.g. lb-2zexxxx@cn-beijing", s)
		}
		opts.LoadBalancers = append(opts.LoadBalancers, resource.LoadBalancer{ID: id, Region: region})
	}
	var vals [3]string
	for i, name := range []string{envAccessKeyID, envAccessKeySecret, envSecurityToken} {
		v, err := envOrFile(name, getenv, readFile)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	switch id, secret := vals[0], vals[1]; {
	case id != "" && secret != "":
		opts.Credentials = &slbsink.Credentials{AccessKeyID: id, AccessKeySecret: secret, SecurityToken: vals[2]}
	case id != "" || secret != "":
		return nil, fmt.Errorf("SLB credentials: set both %s and %s (or their _FILE variants)", envAccessKeyID, envAccessKeySecret)
	}
	return opts, nil
}

// envOrFile reads name from the environment, or from the file name_FILE points to
// (trailing white space trimmed, as Docker secrets often end in a newline).
func envOrFile(name string, getenv func(string) string, readFile func(string) ([]byte, error)) (string, error) {
	v, path := getenv(name), getenv(name+"_FILE")
	switch {
	case v != "" && path != "":
		return "", fmt.Errorf("both %s and %s_FILE are set; use one", name, name)
	case path != "":
		b, err := readFile(path)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return v, nil
}

// routeStage is the SLB half of a plan: it turns the desired routes into listeners and
// VServer groups once the Swarm side is observed, adds what SLB holds to the live set,
// and contributes the SLB sink and its warnings. Without SLB configured it drops the
// routes with a warning. One stage can serve many plans (the daemon keeps it, and the
// sink's caches, across reconciles).
type routeStage struct {
	instance string
	sink     *slbsink.Sink
	ports    *servicePorts
	warnings []string
}

// newRouteStage prepares the SLB stage for desired (whose routes it drops when SLB is not
// configured).
func (a *app) newRouteStage(f slbFlags, desired *resource.Set) (*routeStage, error) {
	opts, err := f.options(a.instance, os.Getenv, os.ReadFile)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		dropRoutes(desired, a.stderr)
		return &routeStage{}, nil
	}
	r := &routeStage{instance: a.instance, ports: &servicePorts{wait: 30 * time.Second, poll: 500 * time.Millisecond}}
	opts.Ports = r.ports
	if r.sink, err = slbsink.New(*opts); err != nil {
		return nil, err
	}
	return r, nil
}

// plan returns desired with its routes expanded against the observed Swarm (nodes from
// swarm, published ports read through cli), and adds SLB's live objects to live.
// desired itself is left as it is, so a loop can expand the same source again when
// nodes come and go.
func (r *routeStage) plan(ctx context.Context, cli client.APIClient, swarm *swarmsink.Sink, source, live *resource.Set) (*resource.Set, error) {
	if r.sink == nil {
		return source, nil
	}
	desired := &resource.Set{Stacks: source.Stacks, Resources: make(map[resource.Key]resource.Resource, len(source.Resources))}
	for k, v := range source.Resources {
		desired.Resources[k] = v
	}
	r.ports.cli = cli
	published := publishedPorts(swarm, desired)
	var nodes []slbsink.Node
	for _, n := range swarm.Nodes() {
		nodes = append(nodes, slbsink.Node{ID: n.ID, Hostname: n.Hostname, Role: n.Role, Availability: n.Availability, State: n.State, Labels: n.Labels})
	}
	var err error
	r.warnings, err = slbsink.Expand(desired, slbsink.ExpandInput{Instance: r.instance, Nodes: nodes, Published: published})
	if err != nil {
		return nil, err
	}
	r.sink.Watch(desired)
	observed, err := r.sink.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("observe slb: %w", err)
	}
	for k, v := range observed.Resources {
		live.Resources[k] = v
	}
	if err := slbsink.CheckPorts(desired, live, r.instance); err != nil {
		return nil, err
	}
	return desired, nil
}

// finish puts the stage's warnings into plan and its sink into sinks.
func (r *routeStage) finish(plan *reconcile.Plan, sinks map[string]reconcile.Sink) {
	plan.Warnings = append(append([]string{}, r.warnings...), plan.Warnings...)
	if r.sink != nil {
		sinks[r.sink.Name()] = r.sink
	}
}

// dropRoutes removes SLB routes from the desired set when no SLB is configured: planning
// their creation would promise something apply cannot do.
func dropRoutes(desired *resource.Set, stderr io.Writer) {
	n := 0
	for k := range desired.Resources {
		if k.Sink == resource.SinkSLB {
			delete(desired.Resources, k)
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(stderr, "warning: %d SLB route(s) not reconciled: no SLB is configured (set %s/%s or --slb-endpoint; see docs/routes.md)\n",
			n, envAccessKeyID, envAccessKeySecret)
	}
}

// servicePorts reads the ports Swarm published for routed services.
type servicePorts struct {
	cli        client.APIClient
	wait, poll time.Duration
}

// publishedPorts returns the published ports of the live services desired's routes point
// at, from what the Swarm sink's last Observe listed: no request of its own.
func publishedPorts(swarm *swarmsink.Sink, desired *resource.Set) map[string][]slbsink.PublishedPort {
	var names []string
	for _, r := range desired.Resources {
		if r.Route != nil {
			names = append(names, r.Route.Service.ServiceName())
		}
	}
	if len(names) == 0 {
		return nil
	}
	out := map[string][]slbsink.PublishedPort{}
	for name, ports := range swarm.PublishedPorts(names...) {
		for _, p := range ports {
			out[name] = append(out[name], slbsink.PublishedPort{Target: p.Target, Published: p.Published, Protocol: p.Protocol})
		}
	}
	return out
}

func endpointPorts(s swarm.Service) []slbsink.PublishedPort {
	var out []slbsink.PublishedPort
	for _, pc := range s.Endpoint.Ports {
		out = append(out, slbsink.PublishedPort{Target: pc.TargetPort, Published: pc.PublishedPort, Protocol: string(pc.Protocol)})
	}
	return out
}

// PublishedPort reads the port Swarm published for service's targetPort, waiting a
// little for a service created moments ago: Swarm allocates its ports asynchronously.
func (p *servicePorts) PublishedPort(ctx context.Context, service string, target uint32, protocol string) (uint32, error) {
	if p.cli == nil {
		return 0, errors.New("no Docker client")
	}
	deadline := time.Now().Add(p.wait)
	for {
		s, _, err := p.cli.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
		if err != nil {
			return 0, err
		}
		for _, pp := range endpointPorts(s) {
			proto := pp.Protocol
			if proto == "" {
				proto = "tcp"
			}
			if pp.Target == target && proto == protocol && pp.Published != 0 {
				return pp.Published, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("service %s has published no port for %d/%s after %s", service, target, protocol, p.wait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(p.poll):
		}
	}
}
