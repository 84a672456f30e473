package source

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const hookSecret = "It's a Secret to Everybody"

// The example from GitHub's documentation on validating webhook deliveries.
func TestValidHMACKnownAnswer(t *testing.T) {
	sig := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if !validHMAC([]byte(hookSecret), []byte("Hello, World!"), sig, "sha256=") {
		t.Error("GitHub's documented signature does not verify")
	}
	for _, bad := range []string{"", "sha256=", "sha1=757107ea", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18", "sha256=zz"} {
		if validHMAC([]byte(hookSecret), []byte("Hello, World!"), bad, "sha256=") {
			t.Errorf("signature %q verified", bad)
		}
	}
}

func payload(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// delivery is one webhook request as a provider sends it.
type delivery struct {
	provider string
	header   map[string]string
	body     []byte
	method   string
}

func github(event, id string, body []byte, secret string) delivery {
	return delivery{provider: "github", body: body, header: map[string]string{
		"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": id,
		"X-Hub-Signature-256": "sha256=" + hmacHex(secret, body), "User-Agent": "GitHub-Hookshot/044aadd"}}
}

func gitlab(event, id string, body []byte, token string) delivery {
	return delivery{provider: "gitlab", body: body, header: map[string]string{
		"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": id,
		"X-Gitlab-Token": token, "User-Agent": "GitLab/17.0.0"}}
}

func gitea(event, id string, body []byte, secret string) delivery {
	return delivery{provider: "gitea", body: body, header: map[string]string{
		"Content-Type": "application/json", "X-Gitea-Event": event, "X-Gitea-Delivery": id,
		"X-Gitea-Signature": hmacHex(secret, body), "X-Hub-Signature-256": "sha256=" + hmacHex(secret, body)}}
}

func generic(id string, body []byte, secret string) delivery {
	d := delivery{provider: "generic", body: body, header: map[string]string{"X-Capstan-Signature": "sha256=" + hmacHex(secret, body)}}
	if id != "" {
		d.header["X-Capstan-Delivery"] = id
	}
	return d
}

// withRef rewrites a payload's ref (before signing).
func withRef(t *testing.T, body []byte, ref string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	m["ref"] = ref
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type recorder struct {
	mu     sync.Mutex
	pushes []Push
}

func (r *recorder) trigger(p Push) {
	r.mu.Lock()
	r.pushes = append(r.pushes, p)
	r.mu.Unlock()
}

func (r *recorder) take() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pushes
	r.pushes = nil
	return p
}

func send(h http.Handler, d delivery) (int, webhookResult) {
	method := d.method
	if method == "" {
		method = http.MethodPost
	}
	req := httptest.NewRequest(method, "/webhook/"+d.provider, bytes.NewReader(d.body))
	for k, v := range d.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var res webhookResult
	_ = json.Unmarshal(rec.Body.Bytes(), &res)
	return rec.Code, res
}

func TestWebhooks(t *testing.T) {
	ghPush := payload(t, "github-push.json")
	ghPing := payload(t, "github-ping.json")
	glPush := payload(t, "gitlab-push.json")
	glTag := payload(t, "gitlab-tag-push.json")
	gtPush := payload(t, "gitea-push.json")

	form := url.Values{"payload": {string(ghPush)}}.Encode()
	ghForm := github("push", "f0rm-1", []byte(form), hookSecret)
	ghForm.header["Content-Type"] = "application/x-www-form-urlencoded"
	badSig := github("push", "bad-1", ghPush, hookSecret)
	badSig.header["X-Hub-Signature-256"] = "sha256=" + hmacHex("wrong secret", ghPush)
	noSig := github("push", "none-1", ghPush, hookSecret)
	delete(noSig.header, "X-Hub-Signature-256")
	sha1Sig := github("push", "sha1-1", ghPush, hookSecret)
	sha1Sig.header["X-Hub-Signature-256"] = "sha1=" + hmacHex(hookSecret, ghPush)[:40]
	tampered := github("push", "tamper-1", ghPush, hookSecret)
	tampered.body = withRef(t, ghPush, "refs/heads/main ") // signed body, then changed
	giteaBad := gitea("push", "gt-bad", gtPush, "wrong")
	glBadToken := gitlab("Push Hook", "gl-bad", glPush, "wrong")
	glIdem := gitlab("Push Hook", "gl-uuid-2", glPush, hookSecret)
	glIdem.header["Idempotency-Key"] = "idem-1"
	glIdemRetry := gitlab("Push Hook", "gl-uuid-3", glPush, hookSecret) // a retry: new event UUID, same key
	glIdemRetry.header["Idempotency-Key"] = "idem-1"
	get := github("push", "get-1", ghPush, hookSecret)
	get.method = http.MethodGet
	huge := bytes.Repeat([]byte(" "), MaxWebhookBody+1)

	// Steps run in order against one receiver, so replays see earlier deliveries.
	steps := []struct {
		name      string
		d         delivery
		code      int
		status    string
		reason    string // a substring
		triggered []Push
	}{
		{"github push to main", github("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", ghPush, hookSecret), 202, "triggered", "",
			[]Push{{Provider: "github", Ref: "refs/heads/main", Delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958"}}},
		{"github replay", github("push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", ghPush, hookSecret), 200, "duplicate", "already received", nil},
		{"github push to another branch", github("push", "gh-2", withRef(t, ghPush, "refs/heads/dev"), hookSecret), 200, "ignored", "refs/heads/dev", nil},
		{"github ping", github("ping", "gh-ping", ghPing, hookSecret), 200, "pong", "", nil},
		{"github other event", github("issues", "gh-3", []byte(`{"action":"opened"}`), hookSecret), 200, "ignored", "issues", nil},
		{"github form-encoded", ghForm, 202, "triggered", "", []Push{{Provider: "github", Ref: "refs/heads/main", Delivery: "f0rm-1"}}},
		{"github bad signature", badSig, 401, "refused", "signature", nil},
		{"github no signature", noSig, 401, "refused", "signature", nil},
		{"github sha1 signature", sha1Sig, 401, "refused", "signature", nil},
		{"github tampered body", tampered, 401, "refused", "signature", nil},
		{"github bad signature, then the real one with its id", github("push", "bad-1", ghPush, hookSecret), 202, "triggered", "",
			[]Push{{Provider: "github", Ref: "refs/heads/main", Delivery: "bad-1"}}},
		{"github GET", get, 405, "refused", "POST", nil},
		{"github body too large", github("push", "huge", huge, hookSecret), 413, "refused", "larger", nil},
		{"gitlab push", gitlab("Push Hook", "gl-1", glPush, hookSecret), 202, "triggered", "",
			[]Push{{Provider: "gitlab", Ref: "refs/heads/main", Delivery: "gl-1"}}},
		{"gitlab replay", gitlab("Push Hook", "gl-1", glPush, hookSecret), 200, "duplicate", "", nil},
		{"gitlab wrong token", glBadToken, 401, "refused", "signature", nil},
		{"gitlab tag push of another ref", gitlab("Tag Push Hook", "gl-tag", glTag, hookSecret), 200, "ignored", "refs/tags/v1.0.0", nil},
		{"gitlab idempotency key", glIdem, 202, "triggered", "", []Push{{Provider: "gitlab", Ref: "refs/heads/main", Delivery: "idem-1"}}},
		{"gitlab retry with the same idempotency key", glIdemRetry, 200, "duplicate", "", nil},
		{"gitlab merge request event", gitlab("Merge Request Hook", "gl-mr", []byte(`{"object_kind":"merge_request"}`), hookSecret), 200, "ignored", "not a push", nil},
		{"gitea push", gitea("push", "gt-1", gtPush, hookSecret), 202, "triggered", "",
			[]Push{{Provider: "gitea", Ref: "refs/heads/main", Delivery: "gt-1"}}},
		{"gitea replay", gitea("push", "gt-1", gtPush, hookSecret), 200, "duplicate", "", nil},
		{"gitea bad signature", giteaBad, 401, "refused", "", nil},
		{"gitea push elsewhere", gitea("push", "gt-2", withRef(t, gtPush, "refs/heads/feature/x"), hookSecret), 200, "ignored", "refs/heads/feature/x", nil},
		{"generic, no body", generic("", nil, hookSecret), 202, "triggered", "", []Push{{Provider: "generic"}}},
		{"generic, no body, no id, again", generic("", nil, hookSecret), 202, "triggered", "", []Push{{Provider: "generic"}}},
		{"generic with the ref", generic("ci-1", []byte(`{"ref":"refs/heads/main"}`), hookSecret), 202, "triggered", "",
			[]Push{{Provider: "generic", Ref: "refs/heads/main", Delivery: "ci-1"}}},
		{"generic replay", generic("ci-1", []byte(`{"ref":"refs/heads/main"}`), hookSecret), 200, "duplicate", "", nil},
		{"generic other ref", generic("ci-2", []byte(`{"ref":"refs/heads/dev"}`), hookSecret), 200, "ignored", "", nil},
		{"generic not JSON", generic("ci-3", []byte(`ref=main`), hookSecret), 400, "refused", "JSON", nil},
		{"generic bad signature", generic("ci-4", nil, "nope"), 401, "refused", "", nil},
		{"unknown provider", delivery{provider: "bitbucket", body: ghPush}, 404, "refused", "github, gitlab, gitea or generic", nil},
	}
	var rec recorder
	var logs logBuffer
	hooks := NewWebhooks(WebhookOptions{Secret: []byte(hookSecret), Ref: "main", Trigger: rec.trigger, Logger: logs.logger()})
	for _, st := range steps {
		code, res := send(hooks, st.d)
		if code != st.code || res.Status != st.status || !strings.Contains(res.Reason, st.reason) {
			t.Errorf("%s: %d %+v, want %d %s (reason containing %q)", st.name, code, res, st.code, st.status, st.reason)
		}
		if diff := cmp.Diff(st.triggered, rec.take()); diff != "" {
			t.Errorf("%s: triggers (-want +got):\n%s", st.name, diff)
		}
	}
	if strings.Contains(logs.String(), hookSecret) {
		t.Errorf("the secret is in the logs")
	}
}

func TestWebhooksWithoutSecretRefuseEverything(t *testing.T) {
	var rec recorder
	hooks := NewWebhooks(WebhookOptions{Ref: "main", Trigger: rec.trigger})
	body := payload(t, "github-push.json")
	// Signed with the empty key, as a misconfigured receiver would otherwise accept.
	code, res := send(hooks, github("push", "x", body, ""))
	if code != http.StatusServiceUnavailable || res.Status != "refused" {
		t.Errorf("no secret: %d %+v, want 503 refused", code, res)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("triggered without a secret: %v", got)
	}
}

func TestWebhookReplayMemoryIsBounded(t *testing.T) {
	var rec recorder
	hooks := NewWebhooks(WebhookOptions{Secret: []byte(hookSecret), Trigger: rec.trigger, Remember: 2})
	body := payload(t, "gitea-push.json")
	for _, id := range []string{"a", "b", "c", "a"} {
		if code, res := send(hooks, gitea("push", id, body, hookSecret)); code != 202 {
			t.Errorf("delivery %s: %d %+v, want 202 (a forgotten id is new again)", id, code, res)
		}
	}
	if code, _ := send(hooks, gitea("push", "c", body, hookSecret)); code != 200 {
		t.Errorf("recent delivery c replayed: %d, want 200 duplicate", code)
	}
	if n := len(rec.take()); n != 4 {
		t.Errorf("%d triggers, want 4", n)
	}
}

func TestRefMatches(t *testing.T) {
	commit := strings.Repeat("a", 40)
	cases := []struct {
		want, pushed string
		ok           bool
	}{
		{"main", "refs/heads/main", true},
		{"main", "refs/heads/main2", false},
		{"main", "refs/tags/main", true},
		{"v1.0.0", "refs/tags/v1.0.0", true},
		{"refs/heads/main", "refs/heads/main", true},
		{"refs/heads/main", "refs/tags/main", false},
		{"", "refs/heads/anything", true},
		{"", "refs/tags/v1", false},
		{commit, "refs/heads/main", false},
		{"main", "", true},
	}
	for _, tc := range cases {
		if ok, why := refMatches(tc.want, tc.pushed); ok != tc.ok || (!ok && why == "") {
			t.Errorf("refMatches(%q, %q) = %v %q, want %v", tc.want, tc.pushed, ok, why, tc.ok)
		}
	}
}
