package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// labelNamespace is docker stack's namespace label (resource.LabelNamespace; not imported
// so this package stays below every other one).
const labelNamespace = "com.docker.stack.namespace"

// UniqueName returns prefix followed by a random suffix, short enough that
// "<name>_<service>" stays well inside Swarm's 63-character limit. Use it as the stack
// name so tests never see each other's objects, even across concurrent test processes.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("unique name: %v", err)
	}
	return strings.ToLower(prefix) + "-" + hex.EncodeToString(b[:])
}

// Cleanup arranges for every object labelled com.docker.stack.namespace=stack to be removed
// when the test ends: services first, then (once their tasks let go) networks, then
// secrets and configs. A failure to remove is a test error, so leaks do not go unnoticed.
func Cleanup(t testing.TB, cli client.APIClient, stack string) {
	t.Helper()
	t.Cleanup(func() {
		// The test's own context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := RemoveStack(ctx, cli, stack); err != nil {
			t.Errorf("cleanup of stack %s: %v", stack, err)
		}
	})
}

// RemoveStack removes every service, network, secret and config of stack now, like
// `docker stack rm` but waiting until networks are gone (they stay in use until the
// removed services' tasks have shut down).
func RemoveStack(ctx context.Context, cli client.APIClient, stack string) error {
	f := filters.NewArgs(filters.Arg("label", labelNamespace+"="+stack))
	var errs []error
	services, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	for _, s := range services {
		if err := cli.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove service %s: %w", s.Spec.Name, err))
		}
	}
	networks, err := cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list networks: %w", err))...)
	}
	for _, n := range networks {
		if err := removeNetwork(ctx, cli, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	secrets, err := cli.SecretList(ctx, swarm.SecretListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list secrets: %w", err))
	}
	for _, s := range secrets {
		if err := cli.SecretRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", s.Spec.Name, err))
		}
	}
	configs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list configs: %w", err))
	}
	for _, c := range configs {
		if err := cli.ConfigRemove(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove config %s: %w", c.Spec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// removeNetwork removes a network and waits until the engine stops listing it: Engine
// 20.10 accepts the removal while tasks of just-removed services still use the network
// and keeps it, pending, until they detach; other versions refuse instead ("in use by
// task", "active endpoints"), which is retried.
func removeNetwork(ctx context.Context, cli client.APIClient, id string) error {
	delay := 100 * time.Millisecond
	for {
		err := cli.NetworkRemove(ctx, id)
		if err == nil {
			_, err = cli.NetworkInspect(ctx, id, network.InspectOptions{})
			if err == nil {
				err = errors.New("removed but still listed")
			}
		}
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
