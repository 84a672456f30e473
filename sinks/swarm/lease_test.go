package swarm

import (
	"context"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/capstan-dev/capstan/internal/dockertest"
)

// clock is a settable clock for one lease holder: expiry is judged by each holder's own
// clock, so the test moves clocks instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestLease(cli client.APIClient, instance, holder string, c *clock) *Lease {
	l := NewLease(cli, instance, holder, 30*time.Second)
	l.now = c.now
	return l
}

func leaseInstance(t *testing.T, cli client.APIClient) string {
	t.Helper()
	instance := dockertest.UniqueName(t, "lease")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cli.ConfigRemove(ctx, LeaseName(instance)); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove lease: %v", err)
		}
	})
	return instance
}

func acquire(t *testing.T, l *Lease) (bool, string) {
	t.Helper()
	held, holder, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatalf("%s: acquire: %v", l.holder, err)
	}
	return held, holder
}

func TestLeaseOnTheEngine(t *testing.T) {
	cli, _ := dockertest.Client(t)
	instance := leaseInstance(t, cli)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, cb := &clock{t: start}, &clock{t: start.Add(3 * time.Second)} // clocks need not agree
	a, b := newTestLease(cli, instance, "a", ca), newTestLease(cli, instance, "b", cb)

	if held, _ := acquire(t, a); !held {
		t.Fatal("a did not get a lease nobody held")
	}
	for i := range 3 {
		if held, holder := acquire(t, b); held || holder != "a" {
			t.Fatalf("round %d: b held %t, sees %q; want a's lease respected", i, held, holder)
		}
		ca.add(10 * time.Second)
		cb.add(10 * time.Second)
		if held, _ := acquire(t, a); !held {
			t.Fatalf("round %d: a could not renew", i)
		}
	}

	// a stops renewing (a crash): b sees the version stand still for a lease duration.
	if held, _ := acquire(t, b); held {
		t.Fatal("b took a lease that was just renewed")
	}
	cb.add(29 * time.Second)
	if held, _ := acquire(t, b); held {
		t.Fatal("b took the lease before it expired by b's clock")
	}
	cb.add(time.Second)
	if held, _ := acquire(t, b); !held {
		t.Fatal("b did not take over a lease unrenewed for its duration")
	}
	// a comes back: it must see it lost.
	if held, holder := acquire(t, a); held || holder != "b" {
		t.Fatalf("a came back and got held %t, holder %q; want b's", held, holder)
	}

	// A clean release hands over at once.
	if err := b.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if held, _ := acquire(t, a); !held {
		t.Fatal("a did not get the lease b released")
	}
	// Releasing a lease one does not hold changes nothing.
	if err := b.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if held, holder := acquire(t, b); held || holder != "a" {
		t.Fatalf("after b's stray release: b held %t, holder %q", held, holder)
	}

	cfg, _, err := cli.ConfigInspectWithRaw(t.Context(), LeaseName(instance))
	if err != nil {
		t.Fatal(err)
	}
	if _, owned := cfg.Spec.Labels["dev.capstan.managed-by"]; owned {
		t.Error("the lease carries dev.capstan.managed-by: the planner would prune it")
	}
}

// TestLeaseCompareAndSwap makes two holders find an expired lease at the same moment,
// many times over: each time exactly one may win.
func TestLeaseCompareAndSwap(t *testing.T) {
	cli, _ := dockertest.Client(t)
	instance := leaseInstance(t, cli)
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	holders := []*Lease{newTestLease(cli, instance, "a", c), newTestLease(cli, instance, "b", c), newTestLease(cli, instance, "c", c)}
	if held, _ := acquire(t, holders[0]); !held {
		t.Fatal("first acquire failed")
	}
	for round := range 8 {
		c.add(2 * time.Hour) // every renewal now looks long dead
		var wg sync.WaitGroup
		won := make([]bool, len(holders))
		errs := make([]error, len(holders))
		for i, l := range holders {
			wg.Go(func() { won[i], _, errs[i] = l.Acquire(t.Context()) })
		}
		wg.Wait()
		n := 0
		for i := range holders {
			if errs[i] != nil {
				t.Fatalf("round %d: %s: %v", round, holders[i].holder, errs[i])
			}
			if won[i] {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d holders believe they hold the lease (%v), want exactly 1", round, n, won)
		}
	}
}
