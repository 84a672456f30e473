package daemon

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memLease is an in-memory lease shared by holders, with the rules of sinks/swarm.Lease
// (free, expired or own: take it).
type memLease struct {
	mu      sync.Mutex
	ttl     time.Duration
	holder  string
	renewed time.Time
	down    bool // the store is unreachable
}

type memHolder struct {
	l  *memLease
	id string
}

func (h memHolder) Acquire(context.Context) (bool, string, error) {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.down {
		return false, "", errors.New("store unreachable")
	}
	if h.l.holder == "" || h.l.holder == h.id || time.Since(h.l.renewed) > h.l.ttl {
		h.l.holder, h.l.renewed = h.id, time.Now()
	}
	return h.l.holder == h.id, h.l.holder, nil
}

func (h memHolder) Release(context.Context) error {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	if h.l.holder == h.id {
		h.l.holder = ""
	}
	return nil
}

func TestElectorHandsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memLease{ttl: 30 * time.Second}
		var mu sync.Mutex
		var changes []string
		onChange := func(id string) func(bool) {
			return func(leader bool) {
				mu.Lock()
				defer mu.Unlock()
				changes = append(changes, map[bool]string{true: id + " leads", false: id + " follows"}[leader])
			}
		}
		a := NewElector(memHolder{store, "a"}, ElectorOptions{Duration: 30 * time.Second, OnChange: onChange("a")})
		b := NewElector(memHolder{store, "b"}, ElectorOptions{Duration: 30 * time.Second, OnChange: onChange("b")})
		ctxA, stopA := context.WithCancel(t.Context())
		ctxB, stopB := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { a.Run(ctxA) })
		synctest.Wait()
		wg.Go(func() { b.Run(ctxB) })
		time.Sleep(time.Minute) // many renewals
		synctest.Wait()
		if !a.IsLeader() || b.IsLeader() || b.Leader() != "a" {
			t.Fatalf("a leader %t, b leader %t (sees %q): want only a", a.IsLeader(), b.IsLeader(), b.Leader())
		}
		stopA() // releases the lease
		synctest.Wait()
		time.Sleep(10 * time.Second) // b's next try
		synctest.Wait()
		if a.IsLeader() || !b.IsLeader() {
			t.Errorf("after a stopped: a leader %t, b leader %t", a.IsLeader(), b.IsLeader())
		}
		stopB()
		wg.Wait()
		want := []string{"a leads", "a follows", "b leads", "b follows"}
		mu.Lock()
		defer mu.Unlock()
		if len(changes) != len(want) {
			t.Fatalf("changes %v, want %v", changes, want)
		}
		for i := range want {
			if changes[i] != want[i] {
				t.Fatalf("changes %v, want %v", changes, want)
			}
		}
	})
}

func TestElectorStepsDownWhenItCannotRenew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &memLease{ttl: 30 * time.Second}
		e := NewElector(memHolder{store, "a"}, ElectorOptions{Duration: 30 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { e.Run(ctx); close(done) }()
		synctest.Wait()
		if !e.IsLeader() {
			t.Fatal("not leader with a free lease")
		}
		store.mu.Lock()
		store.down = true
		store.mu.Unlock()
		// Renewals at 10 s and 20 s fail; the lease renewed at 0 may expire at 30 s, so
		// the leader steps down at the 20 s tick, a period ahead of the expiry.
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if !e.IsLeader() {
			t.Error("stepped down after one failed renewal, well before the lease could expire")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if e.IsLeader() {
			t.Error("still leader 25 s after the last renewal of a 30 s lease")
		}
		cancel()
		<-done
	})
}
