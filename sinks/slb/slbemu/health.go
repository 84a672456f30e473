package slbemu

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// healthLoop checks every backend each interval (and at once after a change) and
// moves it between normal and abnormal after HealthyThreshold / UnhealthyThreshold
// consecutive results; the first result decides directly.
func (f *forwarder) healthLoop() {
	defer f.wg.Done()
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	for {
		f.mu.Lock()
		sp := f.spec
		f.mu.Unlock()
		if sp.hc.enabled {
			results := make([]bool, len(sp.backends))
			var wg sync.WaitGroup
			for i, b := range sp.backends {
				wg.Go(func() { results[i] = f.check(client, sp.hc, b) })
			}
			wg.Wait()
			f.mu.Lock()
			if f.spec.hc.sameProbe(sp.hc) {
				for i, b := range sp.backends {
					if st := f.states[b.key()]; st != nil {
						st.record(results[i], sp.hc)
					}
				}
			}
			f.mu.Unlock()
		}
		interval := sp.hc.interval
		if interval <= 0 {
			interval = 2 * time.Second
		}
		t := time.NewTimer(interval)
		select {
		case <-f.done:
			t.Stop()
			return
		case <-f.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (st *beState) record(ok bool, hc healthSpec) {
	if ok {
		st.okRun, st.failRun = st.okRun+1, 0
	} else {
		st.okRun, st.failRun = 0, st.failRun+1
	}
	switch {
	case st.status == "":
		st.status = map[bool]string{true: "normal", false: "abnormal"}[ok]
	case st.status == "normal" && st.failRun >= hc.unhealthy:
		st.status = "abnormal"
	case st.status == "abnormal" && st.okRun >= hc.healthy:
		st.status = "normal"
	}
}

// check runs one probe: TCP connect, or an HTTP request whose status class must be in
// HealthCheckHttpCode.
func (f *forwarder) check(client *http.Client, hc healthSpec, b fwdBackend) bool {
	port := b.port
	if hc.port > 0 {
		port = hc.port
	}
	addr := net.JoinHostPort(b.host, strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), hc.timeout)
	defer cancel()
	go func() {
		select {
		case <-f.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if !hc.http {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	method := http.MethodGet
	if hc.method == "head" {
		method = http.MethodHead
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+hc.uri, nil)
	if err != nil {
		return false
	}
	if hc.domain != "" {
		req.Host = hc.domain
	}
	req.Header.Set("User-Agent", "slbemu-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	class := "http_" + strconv.Itoa(resp.StatusCode/100) + "xx"
	return slices.Contains(hc.codes, class)
}
