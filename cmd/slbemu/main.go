// Command slbemu runs the Alibaba Cloud SLB (CLB, API 2014-05-15) emulator of package
// sinks/slb/slbemu as a standalone server, for capstan's demo and for trying the SLB
// sink by hand. See docs/slbemu.md.
//
//	slbemu --listen 127.0.0.1:9810 --access-key-id AKID --access-key-secret SECRET \
//	    --load-balancer lb-demo@cn-hangzhou [--forward] [--backend-address i-node1=127.0.0.1]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "slbemu:", err)
		}
		os.Exit(2)
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// run parses args, serves until ctx ends and shuts down. ready, when set, is called
// once the emulator listens.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(*slbemu.Server)) error {
	fs := flag.NewFlagSet("slbemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		lbs, backends listFlag
		cfg           slbemu.Config
		cred          slbemu.Credential
		listen        = fs.String("listen", "127.0.0.1:9810", "address the API listens on")
		logLevel      = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	fs.StringVar(&cred.AccessKeyID, "access-key-id", "", "AccessKeyId clients sign with (required)")
	fs.StringVar(&cred.AccessKeySecret, "access-key-secret", "", "AccessKeySecret (required; or set $SLBEMU_ACCESS_KEY_SECRET)")
	fs.Var(&lbs, "load-balancer", "a load balancer as ID@REGION, e.g. lb-demo@cn-hangzhou (repeatable, at least one)")
	fs.BoolVar(&cfg.Forward, "forward", false, "make running tcp/http listeners listen on --forward-address:<port> and proxy to their backends")
	fs.StringVar(&cfg.ForwardAddress, "forward-address", "127.0.0.1", "IP the forwarded listeners bind to")
	fs.Var(&backends, "backend-address", "map a backend ECS instance id to a host, INSTANCE=HOST (repeatable)")
	fs.StringVar(&cfg.DefaultBackendHost, "default-backend-host", "127.0.0.1", "host for backend instance ids not given by --backend-address")
	fs.DurationVar(&cfg.TransitionDelay, "transition-delay", 0, "how long listeners stay starting/configuring/stopping")
	fs.IntVar(&cfg.TransitionCalls, "transition-calls", 0, "API calls that still see a listener's transitional status")
	fs.IntVar(&cfg.BackendPendingCalls, "backend-pending-calls", 0, "API calls after a backend change that answer BackendServer.configuring to another one")
	fs.DurationVar(&cfg.HealthCheckInterval, "health-check-interval", 0, "override every listener's health check interval (e.g. 200ms)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; every setting is a flag (see --help)", fs.Arg(0))
	}
	if cred.AccessKeySecret == "" {
		cred.AccessKeySecret = os.Getenv("SLBEMU_ACCESS_KEY_SECRET")
	}
	if cred.AccessKeyID == "" || cred.AccessKeySecret == "" {
		return errors.New("--access-key-id and --access-key-secret (or $SLBEMU_ACCESS_KEY_SECRET) are required")
	}
	cfg.Credentials = []slbemu.Credential{cred}
	if len(lbs) == 0 {
		return errors.New("give at least one --load-balancer ID@REGION")
	}
	for _, v := range lbs {
		lb, err := slbemu.ParseLoadBalancer(v)
		if err != nil {
			return fmt.Errorf("--load-balancer: %w", err)
		}
		cfg.LoadBalancers = append(cfg.LoadBalancers, lb)
	}
	cfg.BackendAddresses = map[string]string{}
	for _, v := range backends {
		id, host, ok := strings.Cut(v, "=")
		if !ok || id == "" || host == "" || strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return fmt.Errorf("--backend-address %q: want INSTANCE=HOST, e.g. i-node1=127.0.0.1", v)
		}
		cfg.BackendAddresses[id] = host
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Validate(); err != nil {
		return err
	}

	emu := slbemu.New(cfg)
	if err := emu.Start(*listen); err != nil {
		return err
	}
	for _, lb := range cfg.LoadBalancers {
		cfg.Logger.Info("load balancer", "id", lb.ID, "region", lb.Region)
	}
	cfg.Logger.Info("admin API", "calls", emu.URL()+"/_emu/calls", "faults", emu.URL()+"/_emu/faults",
		"state", emu.URL()+"/_emu/state")
	if ready != nil {
		ready(emu)
	}
	<-ctx.Done()
	cfg.Logger.Info("shutting down")
	done := make(chan error, 1)
	go func() { done <- emu.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("shutdown took longer than 10s")
	}
}
