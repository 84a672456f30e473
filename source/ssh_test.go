package source

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxcd/gitkit"
	"github.com/fluxcd/pkg/gittestserver"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshKey is a fresh ed25519 key: its PEM (optionally encrypted) and public half.
func sshKey(t *testing.T, passphrase string) (pemBytes []byte, pub ssh.PublicKey) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(sk, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(sk, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err = ssh.NewPublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), pub
}

type sshServer struct {
	*gittestserver.GitServer
	hostKey ssh.PublicKey
	addr    string // 127.0.0.1:port
}

// newSSHServer starts gittestserver's SSH server accepting only the given client key.
func newSSHServer(t *testing.T, client ssh.PublicKey) *sshServer {
	t.Helper()
	keyDir := t.TempDir()
	gs := gittestserver.NewGitServer(t.TempDir()).AutoCreate().KeyDir(keyDir)
	gs.Auth("unused", "unused") // switches key authentication on
	allowed := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(client)))
	gs.PublicKeyLookupFunc(func(content string) (*gitkit.PublicKey, error) {
		if content != allowed {
			return nil, errors.New("key not authorized")
		}
		return &gitkit.PublicKey{Id: "deployer"}, nil
	})
	if err := gs.ListenSSH(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.StartSSH() }()
	t.Cleanup(func() { _ = gs.StopSSH() })
	b, err := os.ReadFile(filepath.Join(keyDir, "gitkit.rsa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(gs.SSHAddress(), "ssh://git@")
	return &sshServer{GitServer: gs, hostKey: hk, addr: addr}
}

func (s *sshServer) url(repo string) string { return s.SSHAddress() + "/" + repo }

func knownHostsLine(addr string, key ssh.PublicKey) []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n")
}

func TestGitSSH(t *testing.T) {
	keyPEM, pub := sshKey(t, "")
	srv := newSSHServer(t, pub)
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pushAuth := &gitssh.PublicKeys{User: "git", Signer: signer}
	pushAuth.HostKeyCallback = ssh.FixedHostKey(srv.hostKey)
	up := newUpstream(t, srv.url("r.git"), pushAuth)
	h := up.commit("a", map[string]string{"stacks/compose.yaml": composeYAML("1")})
	up.pushMain()

	known := knownHostsLine(srv.addr, srv.hostKey)
	otherEd25519 := func() ssh.PublicKey { _, p := sshKey(t, ""); return p }()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	otherHost := net.JoinHostPort("127.0.0.2", "22")
	encPEM, encPub := sshKey(t, "open sesame")
	_ = encPub
	wrongPEM, _ := sshKey(t, "")

	cases := []struct {
		name    string
		auth    Auth
		wantErr error
		wantLog string
	}{
		{"key and known_hosts", Auth{SSHKey: keyPEM, KnownHosts: known}, nil, ""},
		{"host key mismatch", Auth{SSHKey: keyPEM, KnownHosts: knownHostsLine(srv.addr, otherRSA)}, ErrHostKey, ""},
		{"host key of another type", Auth{SSHKey: keyPEM, KnownHosts: knownHostsLine(srv.addr, otherEd25519)}, ErrHostKey, ""},
		{"host unknown", Auth{SSHKey: keyPEM, KnownHosts: knownHostsLine(otherHost, srv.hostKey)}, ErrHostKey, ""},
		{"verification off", Auth{SSHKey: keyPEM, InsecureSkipHostKeyCheck: true}, nil, "host key verification is off"},
		{"key not authorized", Auth{SSHKey: wrongPEM, KnownHosts: known}, ErrAuth, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			s := newSource(t, Options{Source: srv.url("r.git"), Ref: "main", Path: "stacks", Auth: tc.auth, Logger: logs.logger()})
			snap, err := s.Fetch(ctxT(t))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				if snap.Revision.Commit() != h.String() {
					t.Errorf("revision %s, want %s", snap.Revision, h)
				}
				if got := readFile(t, snap.Dir, "compose.yaml"); got != composeYAML("1") {
					t.Errorf("content %q", got)
				}
				// Unchanged: the second fetch lists refs and stops.
				if again, err := s.Fetch(ctxT(t)); err != nil || again != snap {
					t.Errorf("second fetch = %+v, %v", again, err)
				}
			}
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("the error shows key material: %v", err)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}

	// An encrypted key needs its passphrase, and says so.
	if _, err := New(Options{Source: srv.url("r.git"), CacheDir: t.TempDir(), Auth: Auth{SSHKey: encPEM, KnownHosts: known}}); err == nil ||
		!strings.Contains(err.Error(), "--git-ssh-key-passphrase-file") {
		t.Errorf("encrypted key without a passphrase: err = %v", err)
	}
	if _, err := New(Options{Source: srv.url("r.git"), CacheDir: t.TempDir(), Auth: Auth{SSHKey: encPEM, SSHKeyPassphrase: "wrong", KnownHosts: known}}); err == nil {
		t.Errorf("wrong passphrase accepted")
	}
}

func TestGitSSHEncryptedKeyAndNoKnownHosts(t *testing.T) {
	keyPEM, pub := sshKey(t, "open sesame")
	srv := newSSHServer(t, pub)
	signer, err := ssh.ParsePrivateKeyWithPassphrase(keyPEM, []byte("open sesame"))
	if err != nil {
		t.Fatal(err)
	}
	pushAuth := &gitssh.PublicKeys{User: "git", Signer: signer}
	pushAuth.HostKeyCallback = ssh.FixedHostKey(srv.hostKey)
	up := newUpstream(t, srv.url("r.git"), pushAuth)
	h := up.commit("a", map[string]string{"compose.yaml": composeYAML("1")})
	up.pushMain()

	// known_hosts from the usual places: ~/.ssh/known_hosts.
	home := t.TempDir()
	t.Setenv("HOME", home)
	_, err = New(Options{Source: srv.url("r.git"), CacheDir: t.TempDir(), Auth: Auth{SSHKey: keyPEM, SSHKeyPassphrase: "open sesame"}})
	if err == nil || !strings.Contains(err.Error(), "--git-known-hosts-file") {
		t.Fatalf("no known_hosts anywhere: err = %v, want advice about --git-known-hosts-file", err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), knownHostsLine(srv.addr, srv.hostKey), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := mustFetch(t, newSource(t, Options{Source: srv.url("r.git"), Auth: Auth{SSHKey: keyPEM, SSHKeyPassphrase: "open sesame"}, Ref: "main"}))
	if snap.Revision.Commit() != h.String() {
		t.Errorf("revision %s, want %s", snap.Revision, h)
	}
	_ = fmt.Sprint
}
