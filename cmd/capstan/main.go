// Command capstan reconciles Docker Swarm stacks and Alibaba Cloud SLB routes declared in a
// Git repository or a local directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a specific exit code out of a command (1 invalid or failed, 2 changes
// present with --detailed-exitcode). Its message, if any, has already been printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// app holds what every command shares: the output streams and global flags.
type app struct {
	stdout, stderr io.Writer
	instance       string
	dockerHost     string
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "capstan",
		Short:         "GitOps reconciler for Docker Swarm stacks and Alibaba Cloud SLB routes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.instance, "instance", "capstan", "name of this installation; written to dev.capstan.managed-by")
	pf.StringVar(&a.dockerHost, "docker-host", "", "Docker Engine address (default $DOCKER_HOST, then the local socket)")
	for _, add := range commands {
		root.AddCommand(add(a))
	}
	return root
}

// commands registers subcommands; each file adds its own from init.
var commands = []func(*app) *cobra.Command{
	func(a *app) *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the capstan version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintf(a.stdout, "capstan %s\n", version)
				return err
			},
		}
	},
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "capstan:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "capstan:", err)
	return 1
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
