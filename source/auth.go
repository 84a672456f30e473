package source

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// Auth carries the credentials of a Git source, as values: the CLI reads them from
// files or the environment with ReadSecret. Its String and GoString print no secret, so
// an Auth that ends up in a log line by mistake leaks nothing.
type Auth struct {
	// Username for HTTPS. With only a Password (a token), "git" is sent: GitHub, GitLab
	// and Gitea accept any user name with a token.
	Username string
	// Password is an HTTPS password or access token.
	Password string
	// SSHKey is a PEM private key (OpenSSH, PKCS#1/#8) for ssh:// and user@host:path URLs.
	// Without one, a running ssh-agent ($SSH_AUTH_SOCK) is used.
	SSHKey []byte
	// SSHKeyPassphrase decrypts SSHKey when it is encrypted.
	SSHKeyPassphrase string
	// KnownHosts is the content of a known_hosts file to verify SSH host keys against.
	// Empty means $SSH_KNOWN_HOSTS, ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
	KnownHosts []byte
	// InsecureSkipHostKeyCheck accepts any SSH host key. It logs a warning.
	InsecureSkipHostKeyCheck bool
}

func (a Auth) empty() bool {
	return a.Username == "" && a.Password == "" && len(a.SSHKey) == 0 && a.SSHKeyPassphrase == "" &&
		len(a.KnownHosts) == 0 && !a.InsecureSkipHostKeyCheck
}

func (a Auth) String() string {
	mask := func(set bool) string {
		if set {
			return "<set>"
		}
		return "<unset>"
	}
	return fmt.Sprintf("{username:%q password:%s ssh-key:%s passphrase:%s known-hosts:%s insecure-skip-host-key-check:%v}",
		a.Username, mask(a.Password != ""), mask(len(a.SSHKey) > 0), mask(a.SSHKeyPassphrase != ""),
		mask(len(a.KnownHosts) > 0), a.InsecureSkipHostKeyCheck)
}

func (a Auth) GoString() string { return "source.Auth" + a.String() }

// sshTimeout bounds the TCP connect and SSH handshake; go-git's SSH dial does not follow
// the context.
const sshTimeout = 30 * time.Second

// method builds the go-git AuthMethod for the endpoint. urlUser and urlPassword are the
// credentials that were in the URL (removed from it before it reached go-git).
func (a Auth) method(ep *transport.Endpoint, urlUser, urlPassword string, log *slog.Logger) (transport.AuthMethod, error) {
	hasHTTPCreds := a.Username != "" || a.Password != ""
	hasSSHCreds := len(a.SSHKey) > 0 || a.SSHKeyPassphrase != "" || len(a.KnownHosts) > 0 || a.InsecureSkipHostKeyCheck
	switch ep.Protocol {
	case "http", "https":
		if hasSSHCreds {
			return nil, fmt.Errorf("SSH key, known_hosts and host-key options apply to ssh URLs only, not %s://", ep.Protocol)
		}
		user, pass := a.Username, a.Password
		if !hasHTTPCreds {
			user, pass = urlUser, urlPassword
		}
		if user == "" && pass == "" {
			return nil, nil
		}
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	case "ssh":
		if hasHTTPCreds {
			return nil, fmt.Errorf("--git-username and --git-password-file apply to https URLs; an ssh URL takes --git-ssh-key-file")
		}
		return a.sshMethod(ep, log)
	case "file":
		if hasHTTPCreds || hasSSHCreds {
			return nil, fmt.Errorf("credentials do not apply to file:// URLs")
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported URL scheme %q: use https://, http://, ssh://, user@host:path or file://", ep.Protocol)
}

func (a Auth) sshMethod(ep *transport.Endpoint, log *slog.Logger) (transport.AuthMethod, error) {
	user := ep.User
	if user == "" {
		user = "git"
	}
	port := ep.Port
	if port <= 0 {
		port = 22
	}
	hostport := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	check, algos, err := a.hostKeyCheck(hostport, log)
	if err != nil {
		return nil, err
	}
	helper := gitssh.HostKeyCallbackHelper{HostKeyCallback: check, HostKeyAlgorithms: algos}
	var m gitssh.AuthMethod
	if len(a.SSHKey) > 0 {
		signer, err := parseSSHKey(a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, err
		}
		m = &gitssh.PublicKeys{User: user, Signer: signer, HostKeyCallbackHelper: helper}
	} else {
		agent, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("ssh URL without a key: pass --git-ssh-key-file (or CAPSTAN_GIT_SSH_KEY[_FILE]), or run an ssh-agent: %w", err)
		}
		agent.HostKeyCallbackHelper = helper
		m = agent
	}
	return timeoutAuth{m}, nil
}

func parseSSHKey(pem []byte, passphrase string) (ssh.Signer, error) {
	if passphrase != "" {
		s, err := ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase))
		if err != nil {
			return nil, fmt.Errorf("ssh key: %w (is the passphrase right?)", err)
		}
		return s, nil
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		if _, missing := err.(*ssh.PassphraseMissingError); missing {
			return nil, fmt.Errorf("ssh key is encrypted: pass --git-ssh-key-passphrase-file (or CAPSTAN_GIT_SSH_KEY_PASSPHRASE[_FILE])")
		}
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	return s, nil
}

// hostKeyCheck returns the host key callback and the host key algorithms to offer, so
// that a server with several keys presents the one known_hosts holds.
func (a Auth) hostKeyCheck(hostport string, log *slog.Logger) (ssh.HostKeyCallback, []string, error) {
	if a.InsecureSkipHostKeyCheck {
		log.Warn("ssh host key verification is off (--git-insecure-skip-host-key-check): the Git server's identity is not checked", "host", hostport)
		return ssh.InsecureIgnoreHostKey(), nil, nil
	}
	var files []string
	if len(a.KnownHosts) > 0 {
		// The known_hosts reader wants files; the content came from a flag or variable.
		f, err := os.CreateTemp("", "capstan-known-hosts-*")
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", err)
		}
		defer os.Remove(f.Name())
		_, werr := f.Write(a.KnownHosts)
		cerr := f.Close()
		if werr != nil || cerr != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", firstErr(werr, cerr))
		}
		files = []string{f.Name()}
	}
	db, err := gitssh.NewKnownHostsDb(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh host key verification needs a known_hosts file: pass --git-known-hosts-file "+
			"(e.g. from `ssh-keyscan -p PORT HOST`), or --git-insecure-skip-host-key-check to skip it: %w", err)
	}
	return db.HostKeyCallback(), db.HostKeyAlgorithms(hostport), nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// timeoutAuth adds a dial and handshake timeout to an SSH auth method's client config.
type timeoutAuth struct{ gitssh.AuthMethod }

func (t timeoutAuth) ClientConfig() (*ssh.ClientConfig, error) {
	c, err := t.AuthMethod.ClientConfig()
	if err != nil {
		return nil, err
	}
	c.Timeout = sshTimeout
	return c, nil
}
