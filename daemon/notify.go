package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/capstan-dev/capstan/reconcile"
	"github.com/capstan-dev/capstan/resource"
)

// EventKind names a notification.
type EventKind string

// Notification events.
const (
	// EventSyncFailed: a reconcile failed and needs attention (a stalled error at once, a
	// transient one once it repeats).
	EventSyncFailed EventKind = "sync_failed"
	// EventDrift: objects departed from what capstan applied since the last notice.
	EventDrift EventKind = "drift"
	// EventRecovered: a reconcile succeeded after a notified failure.
	EventRecovered EventKind = "recovered"
	// EventDegraded: a stack turned Degraded (an update rolled back or paused, a service
	// short of tasks past the progress deadline); Stack and Message say which and why.
	EventDegraded EventKind = "degraded"
	// EventHealthy: a stack notified as Degraded is healthy again.
	EventHealthy EventKind = "healthy"
)

// Event is one notification.
type Event struct {
	Kind     EventKind `json:"event"`
	Instance string    `json:"instance"`
	Revision string    `json:"revision,omitempty"`
	Class    Class     `json:"class,omitempty"`
	Message  string    `json:"message,omitempty"`
	Drift    []Drift   `json:"drift,omitempty"`
	// Stack is the stack a health event is about.
	Stack string    `json:"stack,omitempty"`
	Time  time.Time `json:"time"`
}

// Text renders the event for people (the Slack message, the generic payload's "text").
func (e Event) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "capstan %s: ", e.Instance)
	switch e.Kind {
	case EventSyncFailed:
		fmt.Fprintf(&b, "sync failed (%s)", e.Class)
		if e.Revision != "" {
			fmt.Fprintf(&b, " at %s", e.Revision)
		}
		fmt.Fprintf(&b, ": %s", truncate(e.Message, 1500))
		switch e.Class {
		case Stalled:
			b.WriteString("\nNeeds a human: capstan waits for a new revision or a manual sync.")
		case Transient:
			b.WriteString("\nRetrying with backoff.")
		}
	case EventDrift:
		fmt.Fprintf(&b, "drift in %d object(s)", len(e.Drift))
		for i, d := range e.Drift {
			if i == 20 {
				fmt.Fprintf(&b, "\n…and %d more", len(e.Drift)-i)
				break
			}
			what := "reported"
			if d.Reverted {
				what = "reverted"
			}
			paths := make([]string, 0, len(d.Diff))
			for _, f := range d.Diff {
				paths = append(paths, f.Path)
			}
			fmt.Fprintf(&b, "\n• %s (%s)", d.Key, what)
			if len(paths) > 0 {
				fmt.Fprintf(&b, ": %s", truncate(strings.Join(paths, ", "), 300))
			}
		}
	case EventDegraded:
		fmt.Fprintf(&b, "stack %s is Degraded: %s", e.Stack, truncate(e.Message, 1500))
	case EventHealthy:
		fmt.Fprintf(&b, "stack %s is Healthy again", e.Stack)
	case EventRecovered:
		b.WriteString("recovered")
		if e.Revision != "" {
			fmt.Fprintf(&b, ": %s applied", e.Revision)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// NotifierOptions configure NewNotifier.
type NotifierOptions struct {
	Instance string
	// Repeat is how long a persisting condition stays quiet after a notice; default an hour.
	Repeat time.Duration
	// TransientAfter is how many consecutive transient failures make a notice; default 3,
	// so a single blip (an engine restart) stays quiet.
	TransientAfter int
	// RetryDelay is the pause before the one retry of a failed post; default 2 s.
	RetryDelay time.Duration
	// Client sends the requests; default a client with a 10 s timeout.
	Client  *http.Client
	Logger  *slog.Logger
	Metrics *Metrics
}

// target is one --notify-url.
type target struct {
	url   string
	slack bool
	shown string // for logs: scheme://host/… (webhook URLs embed their token)
}

// ParseNotifyURL reads one --notify-url: an http(s) URL. A "slack+" prefix, or a
// hooks.slack.com host, selects the Slack incoming-webhook payload ({"text": ...}, which
// Mattermost, Rocket.Chat and Discord's /slack endpoint also accept); anything else gets
// the generic JSON event.
func ParseNotifyURL(raw string) (slack bool, u string, err error) {
	u = raw
	if rest, ok := strings.CutPrefix(raw, "slack+"); ok {
		slack, u = true, rest
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return false, "", fmt.Errorf("--notify-url %s: want an http:// or https:// URL, optionally prefixed slack+", redactURL(u))
	}
	if p.Hostname() == "hooks.slack.com" {
		slack = true
	}
	return slack, u, nil
}

// redactURL keeps scheme and host: the path and query of a webhook URL are its secret.
func redactURL(raw string) string {
	p, err := url.Parse(raw)
	if err != nil || p.Host == "" {
		return "(unparseable URL)"
	}
	s := p.Scheme + "://" + p.Host
	if p.Path != "" && p.Path != "/" || p.RawQuery != "" {
		s += "/…"
	}
	return s
}

// Notifier decides which reconciles deserve a notice and sends them. It remembers what
// it sent so a persisting condition is repeated at most once per Repeat.
type Notifier struct {
	opts    NotifierOptions
	targets []target
	log     *slog.Logger
	queue   chan Event

	mu         sync.Mutex
	sent       map[string]time.Time // condition key -> when last notified
	failing    bool                 // a failure was notified and has not recovered
	transients int                  // consecutive transient failures
}

// NewNotifier returns a Notifier for urls (each a --notify-url). With no urls it still
// decides, but sends nothing.
func NewNotifier(urls []string, opts NotifierOptions) (*Notifier, error) {
	if opts.Repeat <= 0 {
		opts.Repeat = time.Hour
	}
	if opts.TransientAfter <= 0 {
		opts.TransientAfter = 3
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 2 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	n := &Notifier{opts: opts, log: opts.Logger, queue: make(chan Event, 64), sent: map[string]time.Time{}}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	for _, raw := range urls {
		slack, u, err := ParseNotifyURL(raw)
		if err != nil {
			return nil, err
		}
		n.targets = append(n.targets, target{url: u, slack: slack, shown: redactURL(u)})
	}
	return n, nil
}

// Decide returns the events one reconcile calls for, and remembers them as sent.
func (n *Notifier) Decide(now time.Time, rep Report, err error, class Class) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	var events []Event
	base := Event{Instance: n.opts.Instance, Revision: rep.Revision, Time: now}
	due := func(key string) bool {
		last, ok := n.sent[key]
		if ok && now.Sub(last) < n.opts.Repeat {
			return false
		}
		n.sent[key] = now
		return true
	}

	switch {
	case err == nil:
		n.transients = 0
		if n.failing {
			n.failing = false
			ev := base
			ev.Kind = EventRecovered
			events = append(events, ev)
		}
		n.forget("failed/")
	case class == Waiting:
		// Convergence under way is not a failure; apply's timeout turns it into health.
	default:
		notify := class == Stalled
		if class == Transient {
			n.transients++
			notify = n.transients >= n.opts.TransientAfter
		} else {
			n.transients = 0
		}
		if notify && due("failed/"+string(class)+"/"+rep.Revision) {
			n.failing = true
			ev := base
			ev.Kind, ev.Class, ev.Message = EventSyncFailed, class, err.Error()
			events = append(events, ev)
		}
	}

	if rep.Observed && rep.Plan != nil {
		current := map[string]bool{}
		var fresh []Drift
		for _, d := range rep.Drift {
			key := "drift/" + d.Key + "/" + driftFingerprint(d)
			current[key] = true
			if due(key) {
				fresh = append(fresh, d)
			}
		}
		// Drift that went away may come back; it is news again then.
		for key := range n.sent {
			if strings.HasPrefix(key, "drift/") && !current[key] {
				delete(n.sent, key)
			}
		}
		if len(fresh) > 0 {
			ev := base
			ev.Kind, ev.Drift = EventDrift, fresh
			events = append(events, ev)
		}
	}
	return events
}

// DecideHealth returns the health events of the stacks in st (the status after a
// reconcile, its health with the progress deadline applied): a stack turning Degraded,
// repeated after Repeat while it stays so, and a notified stack becoming Healthy again.
// Progressing is not news: it is what every rollout goes through.
func (n *Notifier) DecideHealth(now time.Time, st Status) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	// sent["degraded/<stack>"] is kept from the first notice until the stack is healthy
	// again or gone: it also says whether a "healthy" notice is due.
	var events []Event
	present := map[string]bool{}
	for _, sk := range st.Stacks {
		present[sk.Name] = true
		key := "degraded/" + sk.Name
		switch sk.Health {
		case reconcile.Degraded:
			if last, ok := n.sent[key]; ok && now.Sub(last) < n.opts.Repeat {
				continue
			}
			n.sent[key] = now
			events = append(events, Event{Kind: EventDegraded, Instance: n.opts.Instance, Revision: sk.Revision,
				Stack: sk.Name, Message: degradedWhy(sk), Time: now})
		case reconcile.Healthy:
			if _, notified := n.sent[key]; notified {
				events = append(events, Event{Kind: EventHealthy, Instance: n.opts.Instance, Revision: sk.Revision, Stack: sk.Name, Time: now})
			}
			delete(n.sent, key)
		}
	}
	// A stack that left the source is no longer anyone's concern.
	for key := range n.sent {
		if name, ok := strings.CutPrefix(key, "degraded/"); ok && !present[name] {
			delete(n.sent, key)
		}
	}
	return events
}

// degradedWhy lists the Degraded services of sk with what Swarm or the deadline says.
func degradedWhy(sk StackStatus) string {
	var parts []string
	for _, svc := range sk.Services {
		if svc.Health != reconcile.Degraded {
			continue
		}
		why := svc.Message
		if why == "" {
			why = reconcile.DescribeTasks(&resource.ServiceStatus{RunningTasks: svc.RunningTasks, DesiredTasks: svc.DesiredTasks,
				UpdateState: svc.UpdateState, UpdateMessage: svc.UpdateMessage})
		}
		parts = append(parts, svc.Name+": "+why)
	}
	if len(parts) == 0 {
		return "a change failed to converge"
	}
	return strings.Join(parts, "; ")
}

func (n *Notifier) forget(prefix string) {
	for key := range n.sent {
		if strings.HasPrefix(key, prefix) {
			delete(n.sent, key)
		}
	}
}

// driftFingerprint identifies a drift by what differs, so a new edit to an already
// drifted object is news.
func driftFingerprint(d Drift) string {
	parts := make([]string, 0, len(d.Diff))
	for _, f := range d.Diff {
		parts = append(parts, f.Path+"\x00"+f.Before+"\x00"+f.After)
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x01")))
	return hex.EncodeToString(sum[:8])
}

// Enqueue hands events to Run without blocking the loop; when the queue is full the
// event is dropped and logged.
func (n *Notifier) Enqueue(events ...Event) {
	for _, ev := range events {
		select {
		case n.queue <- ev:
		default:
			n.log.Warn("notification dropped: queue full", "event", string(ev.Kind))
		}
	}
}

// Run sends queued events until ctx is done.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.queue:
			_ = n.Send(ctx, ev)
		}
	}
}

// Send posts ev to every target, retrying each once; it returns the failures joined.
func (n *Notifier) Send(ctx context.Context, ev Event) error {
	var errs []string
	for _, t := range n.targets {
		err := n.post(ctx, t, ev)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(n.opts.RetryDelay):
				err = n.post(ctx, t, ev)
			}
		}
		n.opts.Metrics.notification(string(ev.Kind), err)
		if err != nil {
			n.log.Warn("notification failed", "event", string(ev.Kind), "url", t.shown, "error", err.Error())
			errs = append(errs, err.Error())
			continue
		}
		n.log.Info("notification sent", "event", string(ev.Kind), "url", t.shown)
	}
	if len(errs) > 0 {
		return fmt.Errorf("notify: %s", strings.Join(errs, "; "))
	}
	return nil
}

// genericPayload is the generic webhook's body: the event plus its text.
type genericPayload struct {
	Event
	Text string `json:"text"`
}

func (n *Notifier) post(ctx context.Context, t target, ev Event) error {
	var body []byte
	var err error
	if t.slack {
		body, err = json.Marshal(map[string]string{"text": ev.Text()})
	} else {
		body, err = json.Marshal(genericPayload{Event: ev, Text: ev.Text()})
	}
	if err != nil {
		return fmt.Errorf("encode %s notification: %w", ev.Kind, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %s", t.shown, redactErr(err, t.url, t.shown))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "capstan")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s", t.shown, redactErr(err, t.url, t.shown))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", t.shown, resp.Status)
	}
	return nil
}

// redactErr removes the full URL (which holds the webhook's token) from err's text.
func redactErr(err error, full, shown string) string {
	return strings.ReplaceAll(err.Error(), full, shown)
}
