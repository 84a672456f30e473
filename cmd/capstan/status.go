package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/capstan-dev/capstan/daemon"
)

func init() { commands = append(commands, newStatusCmd, newHealthcheckCmd) }

// defaultServer is where capstan run listens by default.
const defaultServer = "http://127.0.0.1:9090"

func newStatusCmd(a *app) *cobra.Command {
	server, output := defaultServer, "table"
	cmd := &cobra.Command{
		Use:   "status [--server URL]",
		Short: "Show the status of a running capstan (capstan run)",
		Long: `status asks a running capstan for /api/v1/status and prints it: the loop's phase and
what it does next, the applied revision, the last error, then every stack (sync state,
health, revision, drift), its services (health, tasks) and the SLB routes.
-o json prints the API's JSON unchanged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := fetch(cmd.Context(), strings.TrimRight(server, "/")+"/api/v1/status")
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			switch output {
			case "json":
				_, err = a.stdout.Write(body)
				return err
			case "table":
			default:
				return &exitError{code: 1, err: fmt.Errorf("-o %q: want table or json", output)}
			}
			var st daemon.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s answered something that is not capstan's status: %w", server, err)}
			}
			return printStatus(a.stdout, st, time.Now())
		},
	}
	cmd.Flags().StringVar(&server, "server", server, "base URL of the running capstan's HTTP API")
	cmd.Flags().StringVarP(&output, "output", "o", output, "output format: table or json")
	return cmd
}

// newHealthcheckCmd is for container health checks: the image is FROM scratch, with no
// shell or curl, so the binary checks itself.
func newHealthcheckCmd(a *app) *cobra.Command {
	url := defaultServer + "/healthz"
	cmd := &cobra.Command{
		Use:   "healthcheck [--url URL]",
		Short: "Exit 0 when a running capstan answers /healthz (for HEALTHCHECK)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			if _, err := fetch(ctx, url); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", url, "health endpoint to check")
	return cmd
}

// fetch GETs url and returns the body of a 200 answer.
func fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is capstan run listening there? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// printStatus renders st as tables.
func printStatus(w io.Writer, st daemon.Status, now time.Time) error {
	ew := &errWriter{w: w}
	role := string(st.Role)
	if st.Role == daemon.Follower && st.Leader != "" {
		role += " (leader: " + st.Leader + ")"
	}
	tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Instance:\t%s\n", st.Instance)
	fmt.Fprintf(tw, "Role:\t%s\n", role)
	fmt.Fprintf(tw, "Phase:\t%s — %s\n", st.Phase, st.Message)
	fmt.Fprintf(tw, "Applied revision:\t%s\n", orDash(st.Revision))
	if st.SourceRevision != st.Revision {
		fmt.Fprintf(tw, "Source revision:\t%s\n", orDash(st.SourceRevision))
	}
	fmt.Fprintf(tw, "Last reconcile:\t%s\n", ago(st.LastReconcileTime, now))
	fmt.Fprintf(tw, "Next reconcile:\t%s\n", until(st.NextReconcileTime, now))
	_ = tw.Flush()
	if e := st.LastError; e != nil {
		fmt.Fprintf(ew, "\nLast error (%s, %s):\n", e.Class, ago(&e.Time, now))
		for _, line := range strings.Split(e.Message, "\n") {
			fmt.Fprintf(ew, "  %s\n", line)
		}
	}

	fmt.Fprintln(ew)
	tw = tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STACK\tSYNC\tHEALTH\tSERVICES\tDRIFT\tREVISION")
	for _, s := range st.Stacks {
		healthy := 0
		for _, svc := range s.Services {
			if svc.Health == "Healthy" {
				healthy++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d healthy\t%d\t%s\n", s.Name, s.Sync, s.Health, healthy, len(s.Services), len(s.Drift), orDash(s.Revision))
	}
	if len(st.Stacks) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t\t\t")
	}
	_ = tw.Flush()

	fmt.Fprintln(ew)
	tw = tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tHEALTH\tTASKS\tUPDATE")
	for _, s := range st.Stacks {
		for _, svc := range s.Services {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", svc.Name, svc.Health, svc.RunningTasks, svc.DesiredTasks, orDash(svc.UpdateState))
		}
	}
	_ = tw.Flush()

	if len(st.Routes) > 0 {
		fmt.Fprintln(ew)
		tw = tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROUTE\tLISTENER\tSERVICE\tSYNC\tHEALTH")
		for _, r := range st.Routes {
			sync := string(r.Sync)
			if !r.Reconciled {
				sync += " (no SLB sink)"
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s:%d\t%s\t%s\n", r.Name, r.LoadBalancer, r.Listener, r.Service, r.TargetPort, sync, r.Health)
		}
		_ = tw.Flush()
	}

	if len(st.Drift) > 0 {
		fmt.Fprintln(ew, "\nDrift (Git -> live):")
		for _, d := range st.Drift {
			what := "reported"
			if d.Reverted {
				what = "reverted"
			}
			fmt.Fprintf(ew, "  %s (%s)\n", d.Key, what)
			for _, f := range d.Diff {
				fmt.Fprintf(ew, "      %s: %s -> %s\n", f.Path, orQuote(f.After), orQuote(f.Before))
			}
		}
	}
	for _, s := range st.Stacks {
		for _, svc := range s.Services {
			if svc.Message != "" {
				fmt.Fprintf(ew, "\nService %s is %s: %s\n", svc.Name, svc.Health, svc.Message)
			}
		}
	}
	for _, s := range st.Stacks {
		if s.LastError != "" {
			fmt.Fprintf(ew, "\nStack %s failed:\n", s.Name)
			for _, line := range strings.Split(s.LastError, "\n") {
				fmt.Fprintf(ew, "  %s\n", line)
			}
		}
	}
	return ew.err
}

// errWriter keeps the first write error, so printing code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orQuote(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	return fmt.Sprintf("%s ago (%s)", now.Sub(*t).Round(time.Second), t.Local().Format(time.DateTime))
}

func until(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "due"
	}
	return "in " + d.String()
}
