package source

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
)

// MaxWebhookBody is the largest webhook body accepted; GitHub caps its payloads at
// 25 MB, but a push event to a config repository is a few KB, and a receiver reachable
// from the internet should not buffer megabytes for anyone who asks.
const MaxWebhookBody = 1 << 20

// WebhookOptions configure NewWebhooks.
type WebhookOptions struct {
	// Secret is the shared secret: the HMAC key for GitHub, Gitea and generic
	// deliveries, the token GitLab sends. Without one every delivery is refused.
	Secret []byte
	// Ref is the source's ref, as given to Options.Ref. Pushes to other refs are
	// acknowledged and ignored. Empty (the remote's default branch, unknown here) lets
	// every branch push through; a pinned commit lets none through, as no push can
	// change it.
	Ref string
	// Trigger is called once per accepted push. It only means "poll now": it carries
	// no commit id, because the poll asks the server and never trusts the payload. It
	// is called on the request's goroutine and must not block; a non-blocking send on
	// a channel with a buffer of one coalesces bursts.
	Trigger func(Push)
	// Logger receives one line per delivery. Nil discards them.
	Logger *slog.Logger
	// Remember is how many delivery ids are kept to recognise a replay; 0 means 4096.
	Remember int
}

// Push is what a webhook tells the poller: who sent it and for which ref. It has no
// commit id on purpose.
type Push struct {
	Provider string // github, gitlab, gitea or generic
	Ref      string // the pushed ref as the payload names it ("" for a bare generic call)
	Delivery string // the delivery id, when the provider sends one
}

// Webhooks receives push notifications at /webhook/github, /webhook/gitlab,
// /webhook/gitea and /webhook/generic (any prefix: the last path element picks the
// provider). Mount it with mux.Handle("/webhook/", w).
type Webhooks struct {
	opts WebhookOptions
	log  *slog.Logger

	mu    sync.Mutex
	seen  map[string]bool
	order []string // the ring of remembered delivery ids, oldest first
}

// NewWebhooks returns the webhook receivers.
func NewWebhooks(opts WebhookOptions) *Webhooks {
	if opts.Remember <= 0 {
		opts.Remember = 4096
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhooks{opts: opts, log: log, seen: map[string]bool{}}
}

// WebhookProviders are the path elements NewWebhooks serves.
var WebhookProviders = []string{"github", "gitlab", "gitea", "generic"}

// webhookResult is the JSON body of every answer: machines read status, people reason.
type webhookResult struct {
	Status string `json:"status"` // triggered, ignored, duplicate, pong, refused
	Reason string `json:"reason,omitempty"`
}

func (w *Webhooks) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	provider := path.Base(r.URL.Path)
	verify, parse := w.provider(provider)
	if verify == nil {
		reply(rw, http.StatusNotFound, "refused", "unknown webhook provider "+provider+": use github, gitlab, gitea or generic")
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		reply(rw, http.StatusMethodNotAllowed, "refused", "webhooks are POST requests")
		return
	}
	if len(w.opts.Secret) == 0 {
		reply(rw, http.StatusServiceUnavailable, "refused", "no webhook secret is configured (--webhook-secret-file or CAPSTAN_WEBHOOK_SECRET)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(rw, http.StatusRequestEntityTooLarge, "refused", fmt.Sprintf("body larger than %d bytes", MaxWebhookBody))
			return
		}
		reply(rw, http.StatusBadRequest, "refused", "reading the body failed")
		return
	}
	// Nothing of the request is looked at before the signature holds.
	if !verify(r.Header, body) {
		w.log.Warn("webhook refused: bad or missing signature", "provider", provider, "remote", r.RemoteAddr)
		reply(rw, http.StatusUnauthorized, "refused", "bad or missing signature")
		return
	}
	ev, err := parse(r.Header, body)
	if err != nil {
		reply(rw, http.StatusBadRequest, "refused", err.Error())
		return
	}
	if ev.delivery != "" && w.replayed(provider+"/"+ev.delivery) {
		w.log.Info("webhook duplicate ignored", "provider", provider, "delivery", ev.delivery)
		reply(rw, http.StatusOK, "duplicate", "delivery "+ev.delivery+" was already received")
		return
	}
	switch {
	case ev.ping:
		reply(rw, http.StatusOK, "pong", "")
		return
	case ev.ignore != "":
		w.log.Info("webhook ignored", "provider", provider, "delivery", ev.delivery, "reason", ev.ignore)
		reply(rw, http.StatusOK, "ignored", ev.ignore)
		return
	}
	if ok, why := refMatches(w.opts.Ref, ev.ref); !ok {
		w.log.Info("webhook ignored", "provider", provider, "delivery", ev.delivery, "reason", why)
		reply(rw, http.StatusOK, "ignored", why)
		return
	}
	w.log.Info("webhook: polling now", "provider", provider, "delivery", ev.delivery, "ref", ev.ref)
	if w.opts.Trigger != nil {
		w.opts.Trigger(Push{Provider: provider, Ref: ev.ref, Delivery: ev.delivery})
	}
	reply(rw, http.StatusAccepted, "triggered", "a poll of the source was requested")
}

func reply(rw http.ResponseWriter, code int, status, reason string) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	_ = json.NewEncoder(rw).Encode(webhookResult{Status: status, Reason: reason})
}

// replayed records id and reports whether it was already there. Only deliveries with a
// valid signature get here, so nobody can fill the memory without the secret.
func (w *Webhooks) replayed(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[id] {
		return true
	}
	w.seen[id] = true
	w.order = append(w.order, id)
	if len(w.order) > w.opts.Remember {
		delete(w.seen, w.order[0])
		w.order = w.order[1:]
	}
	return false
}

// event is the little a receiver takes from a verified payload.
type event struct {
	delivery string
	ref      string
	ping     bool
	ignore   string // a reason not to poll (another event type)
}

type (
	verifier func(h http.Header, body []byte) bool
	parser   func(h http.Header, body []byte) (event, error)
)

func (w *Webhooks) provider(name string) (verifier, parser) {
	secret := w.opts.Secret
	switch name {
	case "github":
		return func(h http.Header, body []byte) bool {
			return validHMAC(secret, body, h.Get("X-Hub-Signature-256"), "sha256=")
		}, parseGitHub
	case "gitlab":
		return func(h http.Header, _ []byte) bool {
			return equalSecret(secret, []byte(h.Get("X-Gitlab-Token")))
		}, parseGitLab
	case "gitea":
		return func(h http.Header, body []byte) bool {
			return validHMAC(secret, body, h.Get("X-Gitea-Signature"), "")
		}, parseGitea
	case "generic":
		return func(h http.Header, body []byte) bool {
			return validHMAC(secret, body, h.Get("X-Capstan-Signature"), "sha256=")
		}, parseGeneric
	}
	return nil, nil
}

// validHMAC checks a hex HMAC-SHA256 of body, after prefix, in constant time.
func validHMAC(secret, body []byte, header, prefix string) bool {
	sigHex, ok := strings.CutPrefix(strings.TrimSpace(header), prefix)
	if !ok || sigHex == "" {
		return false
	}
	got, err := hex.DecodeString(sigHex)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// equalSecret compares a token with the secret in constant time, also in length: both
// sides are hashed first.
func equalSecret(secret, token []byte) bool {
	if len(token) == 0 {
		return false
	}
	a, b := sha256.Sum256(secret), sha256.Sum256(token)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// pushPayload holds the fields the push payloads of GitHub, GitLab and Gitea share.
type pushPayload struct {
	Ref        string `json:"ref"`
	ObjectKind string `json:"object_kind"` // GitLab
}

func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("payload is not valid JSON: %v", err)
	}
	return nil
}

func parseGitHub(h http.Header, body []byte) (event, error) {
	ev := event{delivery: h.Get("X-GitHub-Delivery")}
	switch kind := h.Get("X-GitHub-Event"); kind {
	case "ping":
		ev.ping = true
		return ev, nil
	case "push":
	default:
		ev.ignore = fmt.Sprintf("event %q is not a push", kind)
		return ev, nil
	}
	// GitHub sends either JSON or a form with the JSON in "payload"; both are signed
	// as sent.
	if ct, _, _ := mime.ParseMediaType(h.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return ev, fmt.Errorf("form payload: %v", err)
		}
		body = []byte(form.Get("payload"))
	}
	var p pushPayload
	if err := decodeJSON(body, &p); err != nil {
		return ev, err
	}
	ev.ref = p.Ref
	return ev, nil
}

func parseGitLab(h http.Header, body []byte) (event, error) {
	// Idempotency-Key stays the same when GitLab retries a delivery; older GitLab
	// versions only send the event UUID.
	ev := event{delivery: h.Get("Idempotency-Key")}
	if ev.delivery == "" {
		ev.delivery = h.Get("X-Gitlab-Event-UUID")
	}
	kind := h.Get("X-Gitlab-Event")
	if kind != "Push Hook" && kind != "Tag Push Hook" && kind != "System Hook" {
		ev.ignore = fmt.Sprintf("event %q is not a push", kind)
		return ev, nil
	}
	var p pushPayload
	if err := decodeJSON(body, &p); err != nil {
		return ev, err
	}
	if p.ObjectKind != "push" && p.ObjectKind != "tag_push" {
		ev.ignore = fmt.Sprintf("object_kind %q is not a push", p.ObjectKind)
		return ev, nil
	}
	ev.ref = p.Ref
	return ev, nil
}

func parseGitea(h http.Header, body []byte) (event, error) {
	ev := event{delivery: h.Get("X-Gitea-Delivery")}
	if kind := h.Get("X-Gitea-Event"); kind != "push" {
		ev.ignore = fmt.Sprintf("event %q is not a push", kind)
		return ev, nil
	}
	var p pushPayload
	if err := decodeJSON(body, &p); err != nil {
		return ev, err
	}
	ev.ref = p.Ref
	return ev, nil
}

// parseGeneric accepts an empty body ("something changed") or a JSON object whose
// optional "ref" narrows it, for CI jobs and scripts.
func parseGeneric(h http.Header, body []byte) (event, error) {
	ev := event{delivery: h.Get("X-Capstan-Delivery")}
	if len(strings.TrimSpace(string(body))) == 0 {
		return ev, nil
	}
	var p struct {
		Ref string `json:"ref"`
	}
	if err := decodeJSON(body, &p); err != nil {
		return ev, err
	}
	ev.ref = p.Ref
	return ev, nil
}

// refMatches decides whether a push to pushed concerns the configured ref want.
func refMatches(want, pushed string) (bool, string) {
	switch {
	case pushed == "":
		return true, "" // a generic "poll now" with no ref
	case isCommitID(want):
		return false, "the source is pinned to commit " + want + "; no push changes it"
	case want == "":
		if strings.HasPrefix(pushed, "refs/heads/") {
			return true, "" // the default branch is only known to the server: poll
		}
		return false, "push to " + pushed + "; the source follows the default branch"
	case strings.HasPrefix(want, "refs/"):
		if pushed == want {
			return true, ""
		}
	default:
		for _, n := range candidateNames(want) {
			if pushed == n {
				return true, ""
			}
		}
	}
	return false, "push to " + pushed + "; the source follows " + want
}
