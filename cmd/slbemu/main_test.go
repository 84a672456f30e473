package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"
	"github.com/google/go-cmp/cmp"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesTheSDK(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	ready := make(chan *slbemu.Server, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--listen", "127.0.0.1:0", "--access-key-id", "AKID", "--access-key-secret", "s3",
			"--load-balancer", "lb-a@cn-hangzhou", "--load-balancer", "lb-b@cn-hangzhou", "--load-balancer", "lb-c@cn-beijing",
			"--forward", "--backend-address", "i-node1=127.0.0.1"}, &logs, func(s *slbemu.Server) { ready <- s })
	}()
	var emu *slbemu.Server
	select {
	case emu = <-ready:
	case err := <-errc:
		t.Fatalf("run returned early: %v\n%s", err, logs.String())
	}

	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false)
	cfg.Transport = &http.Transport{Proxy: nil}
	c, err := slb.NewClientWithOptions("cn-hangzhou", cfg, credentials.NewStaticAKCredentialsProvider("AKID", "s3"))
	if err != nil {
		t.Fatal(err)
	}
	c.Domain = emu.Endpoint()
	resp, err := c.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, lb := range resp.LoadBalancers.LoadBalancer {
		ids = append(ids, lb.LoadBalancerId)
	}
	if diff := cmp.Diff([]string{"lb-a", "lb-b"}, ids); diff != "" {
		t.Errorf("load balancers in cn-hangzhou (-want +got):\n%s", diff)
	}

	// Faults over the admin endpoint.
	r, err := http.Post(emu.URL()+"/_emu/faults", "application/json", strings.NewReader(`{"code":"ServiceUnavailable","count":1}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	_, err = c.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
	var se *sdkerrors.ServerError
	if !errors.As(err, &se) || se.ErrorCode() != "ServiceUnavailable" || se.HttpStatus() != 503 {
		t.Errorf("after POST /_emu/faults: %v", err)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run: %v", err)
	}
	for _, want := range []string{"SLB emulator listening", "lb-c", "shutting down"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	base := []string{"--listen", "127.0.0.1:0", "--access-key-id", "AKID", "--access-key-secret", "s3"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no load balancer", base, "at least one --load-balancer"},
		{"load balancer without region", append(base, "--load-balancer", "lb-a"), "want ID@REGION"},
		{"no key", []string{"--load-balancer", "lb-a@r"}, "--access-key-id and --access-key-secret"},
		{"bad backend address", append(base, "--load-balancer", "lb-a@r", "--backend-address", "i-1"), "want INSTANCE=HOST"},
		{"bad forward address", append(base, "--load-balancer", "lb-a@r", "--forward-address", "here"), "not an IP"},
		{"bad log level", append(base, "--load-balancer", "lb-a@r", "--log-level", "loud"), "--log-level"},
		{"stray argument", append(base, "--load-balancer", "lb-a@r", "extra"), "unexpected argument"},
		{"unknown flag", append(base, "--nope"), "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SLBEMU_ACCESS_KEY_SECRET", "")
			var stderr syncBuffer
			err := run(context.Background(), tt.args, &stderr, func(*slbemu.Server) { t.Fatal("server started") })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
