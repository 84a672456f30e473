package source

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	testUser     = "deployer"
	testPassword = "s3cr3t-t0ken-value"
)

// assertNoSecret fails if secret appears in any file under dir.
func assertNoSecret(t *testing.T, dir, secret string) {
	t.Helper()
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), secret) {
			t.Errorf("%s contains the secret", p)
		}
		return nil
	})
}

func TestGitHTTPBasicAuth(t *testing.T) {
	srv := newGitServer(t, withAuth(testUser, testPassword))
	up := newUpstream(t, srv.url("private.git"), basicAuth(testUser, testPassword))
	h := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()
	cache := t.TempDir()
	var logs logBuffer

	cases := []struct {
		name    string
		source  string
		auth    Auth
		wantErr error
	}{
		{"flags", srv.url("private.git"), Auth{Username: testUser, Password: testPassword}, nil},
		{"in the URL", strings.Replace(srv.url("private.git"), "://", "://"+testUser+":"+testPassword+"@", 1), Auth{}, nil},
		{"wrong password", srv.url("private.git"), Auth{Username: testUser, Password: "wrong-" + testPassword}, ErrAuth},
		{"wrong password in the URL", strings.Replace(srv.url("private.git"), "://", "://"+testUser+":x"+testPassword+"@", 1), Auth{}, ErrAuth},
		{"none", srv.url("private.git"), Auth{}, ErrAuth},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, Options{Source: tc.source, Ref: "main", Auth: tc.auth, CacheDir: cache, Logger: logs.logger()})
			if strings.Contains(s.String(), testPassword) {
				t.Errorf("String() = %q shows the password", s)
			}
			snap, err := s.Fetch(ctxT(t))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), testPassword) {
					t.Errorf("the error shows the password: %v", err)
				}
				if !strings.Contains(err.Error(), "--git-password-file") {
					t.Errorf("the error does not say what to check: %v", err)
				}
				return
			}
			if snap.Revision.Commit() != h.String() || strings.Contains(snap.Revision.String(), testPassword) {
				t.Errorf("revision %s", snap.Revision)
			}
		})
	}
	// Credentials in the URL or not, it is the same remote and the same cache.
	entries, err := os.ReadDir(filepath.Join(cache, "git"))
	if err != nil || len(entries) != 1 {
		t.Errorf("cache has %d remotes (%v), want 1", len(entries), err)
	}
	assertNoSecret(t, cache, testPassword)
	if strings.Contains(logs.String(), testPassword) {
		t.Errorf("logs show the password:\n%s", logs.String())
	}
	if fmt.Sprint(Auth{Password: testPassword}) == "" || strings.Contains(fmt.Sprintf("%v %+v %#v", Auth{Password: testPassword}, Auth{Password: testPassword}, Auth{Password: testPassword}), testPassword) {
		t.Errorf("formatting an Auth shows the password")
	}
}

func TestGitServerFailures(t *testing.T) {
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome to our wiki</body></html>")
	}))
	defer html.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	defer broken.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/repo.git"
	l.Close()
	empty := newGitServer(t)

	cases := []struct {
		name, url string
		want      error
	}{
		{"html page", html.URL + "/repo.git", ErrNotRepository},
		{"404", notFound.URL + "/repo.git", ErrNotRepository},
		{"502", broken.URL + "/repo.git", ErrUnreachable},
		{"connection refused", closed, ErrUnreachable},
		{"empty repository", empty.url("new.git"), ErrRefNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, Options{Source: tc.url, Ref: "main"})
			_, err := s.Fetch(ctxT(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch: err = %v, want %v", err, tc.want)
			}
			if _, err := s.Head(ctxT(t)); !errors.Is(err, tc.want) {
				t.Errorf("Head: err = %v, want %v", err, tc.want)
			}
			t.Log(err)
			if len(err.Error()) > 600 {
				t.Errorf("error message is %d bytes long: %s", len(err.Error()), err)
			}
		})
	}
}

func TestAuthOptionsMismatch(t *testing.T) {
	cases := []struct {
		source string
		auth   Auth
	}{
		{"https://example.com/r.git", Auth{SSHKey: []byte("key")}},
		{"https://example.com/r.git", Auth{InsecureSkipHostKeyCheck: true}},
		{"ssh://git@example.com/r.git", Auth{Password: "x"}},
		{"file:///tmp/r.git", Auth{Username: "u"}},
		{"ftp://example.com/r.git", Auth{}},
		{"ssh://git:pw@example.com/r.git", Auth{}},
		{t.TempDir(), Auth{Password: "x"}},
	}
	for _, tc := range cases {
		if _, err := New(Options{Source: tc.source, CacheDir: t.TempDir(), Auth: tc.auth}); err == nil {
			t.Errorf("New(%s, %v) accepted", tc.source, tc.auth)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("error shows the URL password: %v", err)
		}
	}
}
