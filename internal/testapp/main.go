// Command testapp is the tiny static program capstan's tests and examples run as their
// container image (no registry is reachable, so every image an example names is this
// binary, tagged under that name).
//
// As a server it listens on $PORT (default 80) and serves:
//
//	/license.txt  a fixed text, $MESSAGE and the hostname (what the SLB health check asks for)
//	/healthz      "ok" (503 "draining" while draining, see $DRAIN)
//	/env          the process environment, one KEY=VALUE a line
//
// When any MYSQL_* variable is set it also listens on 3306, so the same image stands in
// for mysql in the WordPress example (nothing speaks the MySQL protocol to it; it only has
// to be up). $LISTEN_ALSO adds more ports (comma-separated).
//
// $FAIL_AFTER (a Go duration, e.g. "0s" or "2s") makes it exit with status 3 after that
// delay: a service update to such a spec fails its tasks, which is how rollback is tested.
//
// $DRAIN (a Go duration) delays the shutdown on SIGTERM: for that long /healthz answers
// 503 while everything else is still served, so a load balancer's health check takes the
// task out before it stops listening (how zero-downtime rolling updates are tested).
//
// "testapp healthcheck URL" does one HTTP GET and exits 0 on a 2xx/3xx answer, 1
// otherwise, so compose healthchecks work in an image that has no shell or curl.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// licenseText is the fixed part of /license.txt.
const licenseText = "capstan test application\nThis stands in for the images named in capstan's examples.\n"

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Args[2:], os.Stderr))
	}
	if err := serve(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// healthcheck GETs args[0] and returns the exit status.
func healthcheck(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: testapp healthcheck URL")
		return 2
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s\n", args[0], resp.Status)
	return 1
}

func serve() error {
	// As PID 1 in a container the process gets no default signal handling: without this,
	// `docker stop` and service removal would wait out the full stop grace period.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if d := os.Getenv("FAIL_AFTER"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil {
			return fmt.Errorf("FAIL_AFTER=%q: %w", d, err)
		}
		go func() {
			time.Sleep(delay)
			log.Printf("FAIL_AFTER=%s elapsed: exiting with status 3", d)
			os.Exit(3)
		}()
	}

	var drainDelay time.Duration
	if d := os.Getenv("DRAIN"); d != "" {
		var err error
		if drainDelay, err = time.ParseDuration(d); err != nil {
			return fmt.Errorf("DRAIN=%q: %w", d, err)
		}
	}

	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 4)
	ports := listenPorts()
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return fmt.Errorf("listen on port %s: %w", p, err)
		}
		log.Printf("listening on %s", ln.Addr())
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drain(drainDelay)
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// draining is set once a SIGTERM arrived under $DRAIN: /healthz then fails.
var draining atomic.Bool

// drain fails /healthz and waits for delay before the server shuts down.
func drain(delay time.Duration) {
	if delay <= 0 {
		return
	}
	draining.Store(true)
	log.Printf("draining for %s: /healthz answers 503", delay)
	time.Sleep(delay)
}

func listenPorts() []string {
	port := os.Getenv("PORT")
	if port == "" {
		port = "80"
	}
	ports := []string{port}
	seen := map[string]bool{port: true}
	add := func(p string) {
		p = strings.TrimSpace(p)
		if p != "" && !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MYSQL_") {
			add("3306")
			break
		}
	}
	for _, p := range strings.Split(os.Getenv("LISTEN_ALSO"), ",") {
		add(p)
	}
	return ports
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/license.txt", func(w http.ResponseWriter, _ *http.Request) {
		host, _ := os.Hostname()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%smessage: %s\nhostname: %s\n", licenseText, os.Getenv("MESSAGE"), host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "draining")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) {
		env := os.Environ()
		sort.Strings(env)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, kv := range env {
			fmt.Fprintln(w, kv)
		}
	})
	return mux
}
