package swarm

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Labels of the lease config object.
const (
	LabelLeaseInstance = "dev.capstan.lease.instance"
	LabelLeaseHolder   = "dev.capstan.lease.holder"
	LabelLeaseRenewed  = "dev.capstan.lease.renewed"  // the holder's clock, RFC 3339
	LabelLeaseDuration = "dev.capstan.lease.duration" // seconds
)

// LeaseName is the name of the config object that holds instance's leader lease.
func LeaseName(instance string) string { return "capstan-lease-" + instance }

// Lease is a leader lease kept in Swarm's own Raft store: the labels of a config object
// named LeaseName(instance). Every write is a compare-and-swap: ConfigUpdate carries the
// version index the holder read, and swarmkit refuses it ("update out of sequence") when
// anyone wrote in between. So of two replicas that find the lease free, exactly one
// takes it.
//
// Expiry does not trust clocks across nodes: a replica considers a lease expired when
// it has seen the object's version stay the same for a whole lease duration by its own
// clock (the way Kubernetes' leader election does). A lease whose renewal time is more
// than two durations old is also expired at once, so a replica that starts after the
// holder died long ago does not wait.
//
// The config object carries no dev.capstan.managed-by label and no stack namespace, so
// the planner never sees it as something to prune; its data is a fixed sentence.
type Lease struct {
	cli      client.APIClient
	name     string
	instance string
	holder   string
	duration time.Duration
	now      func() time.Time

	mu          sync.Mutex
	seenVersion uint64
	seenAt      time.Time
}

// NewLease returns holder's handle on instance's lease. duration is how long a lease
// lasts without renewal; renew well within it (daemon.Elector renews every third).
func NewLease(cli client.APIClient, instance, holder string, duration time.Duration) *Lease {
	return &Lease{cli: cli, name: LeaseName(instance), instance: instance, holder: holder, duration: duration, now: time.Now}
}

// Name is the lease's config object name.
func (l *Lease) Name() string { return l.name }

// Acquire takes the lease when it is free or expired, renews it when held, and reports
// whether holder holds it now and who does. Losing a race is not an error: it reports
// the lease as not held, and the next call reads the winner.
func (l *Lease) Acquire(ctx context.Context) (bool, string, error) {
	cfg, err := l.inspect(ctx)
	if cerrdefs.IsNotFound(err) {
		return l.create(ctx)
	}
	if err != nil {
		return false, "", err
	}
	holder := cfg.Spec.Labels[LabelLeaseHolder]
	if holder != l.holder && holder != "" && !l.expired(cfg) {
		return false, holder, nil
	}
	if err := l.write(ctx, cfg, l.holder); err != nil {
		if outOfSequence(err) {
			return false, holder, nil
		}
		return false, holder, err
	}
	return true, l.holder, nil
}

// Release gives the lease up when holder has it.
func (l *Lease) Release(ctx context.Context) error {
	cfg, err := l.inspect(ctx)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Spec.Labels[LabelLeaseHolder] != l.holder {
		return nil
	}
	if err := l.write(ctx, cfg, ""); err != nil && !outOfSequence(err) {
		return err
	}
	return nil
}

func (l *Lease) inspect(ctx context.Context) (swarm.Config, error) {
	cfg, _, err := l.cli.ConfigInspectWithRaw(ctx, l.name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return swarm.Config{}, err
		}
		return swarm.Config{}, fmt.Errorf("swarm: read lease %s: %w", l.name, err)
	}
	if cfg.Spec.Name != l.name {
		// The Engine also resolves ID prefixes; only the exact name is the lease.
		return swarm.Config{}, cerrdefs.ErrNotFound.WithMessage("no lease " + l.name)
	}
	return cfg, nil
}

func (l *Lease) labels(holder string) map[string]string {
	return map[string]string{
		LabelLeaseInstance: l.instance,
		LabelLeaseHolder:   holder,
		LabelLeaseRenewed:  l.now().UTC().Format(time.RFC3339Nano),
		LabelLeaseDuration: strconv.Itoa(int(l.duration.Seconds())),
	}
}

func (l *Lease) create(ctx context.Context) (bool, string, error) {
	spec := swarm.ConfigSpec{
		Annotations: swarm.Annotations{Name: l.name, Labels: l.labels(l.holder)},
		Data:        []byte("capstan leader lease for instance " + l.instance + "; managed by capstan, do not edit\n"),
	}
	if _, err := l.cli.ConfigCreate(ctx, spec); err != nil {
		if cerrdefs.IsConflict(err) || cerrdefs.IsAlreadyExists(err) {
			return false, "", nil // another replica created it first
		}
		return false, "", fmt.Errorf("swarm: create lease %s: %w", l.name, err)
	}
	return true, l.holder, nil
}

// write sets the holder through a compare-and-swap on cfg's version.
func (l *Lease) write(ctx context.Context, cfg swarm.Config, holder string) error {
	spec := cfg.Spec
	spec.Labels = l.labels(holder)
	if err := l.cli.ConfigUpdate(ctx, cfg.ID, cfg.Version, spec); err != nil {
		return fmt.Errorf("swarm: write lease %s: %w", l.name, err)
	}
	return nil
}

// expired decides whether another holder's lease has run out (see Lease).
func (l *Lease) expired(cfg swarm.Config) bool {
	now := l.now()
	d := l.duration
	if s, err := strconv.Atoi(cfg.Spec.Labels[LabelLeaseDuration]); err == nil && s > 0 {
		d = time.Duration(s) * time.Second
	}
	if renewed, err := time.Parse(time.RFC3339Nano, cfg.Spec.Labels[LabelLeaseRenewed]); err == nil && now.Sub(renewed) > 2*d {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cfg.Version.Index != l.seenVersion || l.seenAt.IsZero() {
		l.seenVersion, l.seenAt = cfg.Version.Index, now
		return false
	}
	return now.Sub(l.seenAt) >= d
}
