package main

import (
	"net/http/httptest"
	"testing"
	"time"
)

// While draining, /healthz fails so a load balancer takes the task out, but every other
// path is still served.
func TestDrainFailsOnlyHealthz(t *testing.T) {
	srv := httptest.NewServer(handler())
	defer srv.Close()
	t.Cleanup(func() { draining.Store(false) })

	done := make(chan struct{})
	go func() { drain(time.Minute); close(done) }()
	for !draining.Load() {
		time.Sleep(time.Millisecond)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != 503 || body != "draining\n" {
		t.Errorf("GET /healthz while draining: %d %q, want 503 \"draining\\n\"", code, body)
	}
	if code, _ := get(t, srv.URL+"/license.txt"); code != 200 {
		t.Errorf("GET /license.txt while draining: %d, want 200", code)
	}
	select {
	case <-done:
		t.Error("drain(time.Minute) returned at once")
	default:
	}
}

func TestDrainZeroReturnsAtOnce(t *testing.T) {
	drain(0)
	if draining.Load() {
		t.Error("drain(0) set draining")
	}
}
