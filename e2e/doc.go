// Package e2e holds capstan's end-to-end tests: the WordPress scenario of
// examples/wordpress from a Git push to traffic answered through the (emulated) SLB, on
// the real Docker Engine in swarm mode, with a real Git server and the capstan binary
// running as `capstan run`, the way users run it.
//
// The tests carry the build tag e2e and run with `make e2e`:
//
//	go test -tags e2e -count=1 ./e2e/ -v -timeout 20m
//
// They share one setup, made by the first test that needs it and removed after the last:
// the capstan binary built from this checkout, the small test image tagged as
// capstan-e2e/wordpress and capstan-e2e/mysql, a Git server on 127.0.0.1 holding an
// adapted copy of examples/wordpress, the SLB emulator (sinks/slb/slbemu) in-process with
// forwarding, the swarm node labelled as an ECS instance, and `capstan run` as a
// subprocess polling the Git server every 2 s (CAPSTAN_E2E_INTERVAL changes it).
// Everything they create (stack, node label, unowned objects, the lease, processes) is
// removed afterwards.
//
// The copy of the example differs from examples/wordpress where this machine requires it
// (docs/e2e.md explains each): wordpress publishes port 80 in host mode on a fixed port
// (the routing mesh needs IPVS, which the kernel here lacks, so ingress ports do not
// forward), the stack has a unique name, the listener moves off 8080 only when 8080 is
// taken, and wordpress.dab is left out.
//
// e2e/cluster (its own package) builds a three-node swarm; these tests use the engine
// the environment names (DOCKER_HOST or the local socket).
package e2e
