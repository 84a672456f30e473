// Command cluster starts or removes capstan's three-node test swarm (package
// e2e/cluster); hack/cluster.sh runs it for make demo-cluster.
//
//	cluster up [-fresh] [IMAGE...]   start it (or reuse it) and load the images
//	cluster down                     remove it and anything an earlier run left
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/capstan-dev/capstan/e2e/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: cluster up [-fresh] [IMAGE...] | cluster down")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "[capstan] "+format+"\n", a...) }
	switch args[0] {
	case "up":
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fresh := fs.Bool("fresh", false, "remove a running cluster and build a new one")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		c, err := cluster.Up(ctx, cluster.Options{Images: fs.Args(), Fresh: *fresh, Logf: logf})
		if err != nil {
			fmt.Fprintln(stderr, "cluster up:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tDOCKER_HOST\tNODE ID\tECS INSTANCE")
		for _, n := range c.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Addr, n.Host, n.ID, n.InstanceID)
		}
		if err := tw.Flush(); err != nil {
			return 1
		}
		return 0
	case "down":
		if len(args) != 1 {
			return usage()
		}
		if err := cluster.Down(ctx, logf); err != nil {
			fmt.Fprintln(stderr, "cluster down:", err)
			return 1
		}
		return 0
	default:
		return usage()
	}
}
