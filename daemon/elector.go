package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LeaseStore is a lease shared by the replicas of one installation. sinks/swarm.Lease
// implements it on a Swarm config object.
type LeaseStore interface {
	// Acquire takes the lease when it is free or expired, or renews it when this holder
	// has it. It reports whether this holder holds the lease now, and who does ("" when
	// nobody). An error means the store could not be read or written.
	Acquire(ctx context.Context) (held bool, holder string, err error)
	// Release gives the lease up if this holder has it, so another replica takes over
	// without waiting for it to expire.
	Release(ctx context.Context) error
}

// Leadership tells the loop whether this replica may write.
type Leadership interface {
	IsLeader() bool
	// Leader is the current holder as last seen, "" when unknown.
	Leader() string
}

// ElectorOptions configure NewElector.
type ElectorOptions struct {
	// Duration is how long a lease lasts without renewal; the store's own rules use it
	// too. Default 30 s.
	Duration time.Duration
	// RenewEvery is how often the lease is renewed or, on a follower, tried; default a
	// third of Duration.
	RenewEvery time.Duration
	// OnChange is called (from the elector's goroutine) when this replica becomes leader
	// or stops being one.
	OnChange func(leader bool)
	Logger   *slog.Logger
	Metrics  *Metrics
}

// Elector keeps trying to hold a LeaseStore's lease and reports whether it does.
//
// A leader that cannot renew steps down once the lease it last renewed may have expired
// (Duration after the last successful renewal, by its own clock, minus one renewal
// period of margin), so two replicas never both believe they lead for longer than the
// store's clocks disagree.
type Elector struct {
	store LeaseStore
	opts  ElectorOptions
	log   *slog.Logger

	mu      sync.Mutex
	leader  bool
	holder  string
	renewed time.Time
}

// NewElector returns an Elector on store; call Run.
func NewElector(store LeaseStore, opts ElectorOptions) *Elector {
	if opts.Duration <= 0 {
		opts.Duration = 30 * time.Second
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = opts.Duration / 3
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{store: store, opts: opts, log: log}
}

// IsLeader reports whether this replica holds the lease.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Leader is the holder last seen.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Run tries to acquire and renew the lease until ctx is done, then releases it if held.
func (e *Elector) Run(ctx context.Context) {
	e.step(ctx)
	t := time.NewTicker(e.opts.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if e.IsLeader() {
				// The parent context is gone; the release gets a short one of its own.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				if err := e.store.Release(rctx); err != nil {
					e.log.Warn("lease not released; another replica takes over when it expires", "error", err.Error())
				}
				cancel()
				e.set(false, "")
			}
			return
		case <-t.C:
			e.step(ctx)
		}
	}
}

// step tries the store once.
func (e *Elector) step(ctx context.Context) {
	held, holder, err := e.store.Acquire(ctx)
	now := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		renewed, leader := e.renewed, e.leader
		e.mu.Unlock()
		if leader && now.Sub(renewed) >= e.opts.Duration-e.opts.RenewEvery {
			e.log.Error("leader lease could not be renewed in time; stepping down", "error", err.Error())
			e.set(false, "")
			return
		}
		e.log.Warn("leader lease: store unavailable", "error", err.Error())
		return
	}
	if held {
		e.mu.Lock()
		e.renewed = now
		e.mu.Unlock()
	}
	e.set(held, holder)
}

func (e *Elector) set(leader bool, holder string) {
	e.mu.Lock()
	changed := e.leader != leader
	e.leader, e.holder = leader, holder
	e.mu.Unlock()
	e.opts.Metrics.setLeader(leader)
	if !changed {
		return
	}
	if leader {
		e.log.Info("leader lease acquired: this replica reconciles and writes")
	} else {
		e.log.Info("not the leader: serving status only", "leader", holder)
	}
	if e.opts.OnChange != nil {
		e.opts.OnChange(leader)
	}
}
