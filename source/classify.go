package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
)

// classify turns a go-git or network error into an *Error of the right kind, with a hint
// that names the flag to look at. Errors it cannot place are wrapped as they are.
func (g *Git) classify(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	fail := func(kind error, hint string) error {
		return &Error{Kind: kind, Source: g.url, Ref: g.ref, Err: err, Hint: hint}
	}
	msg := err.Error()
	var keyErr *knownhosts.KeyError
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Kind: ErrUnreachable, Source: g.url, Ref: g.ref, Detail: "canceled", Err: err}
	case errors.As(err, &keyErr) || strings.Contains(msg, "knownhosts:") || strings.Contains(msg, "no common algorithm for host key"):
		return fail(ErrHostKey, "the server's key is not the one in known_hosts; check --git-known-hosts-file "+
			"(compare with `ssh-keyscan -p PORT HOST` over a trusted network)")
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"):
		if g.isSSH() {
			return fail(ErrAuth, "check that --git-ssh-key-file holds a key the server accepts for this repository (a deploy key)")
		}
		return fail(ErrAuth, "check --git-username and --git-password-file (or CAPSTAN_GIT_PASSWORD[_FILE]); with a token, the user name is usually ignored")
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fail(ErrNotRepository, "check the URL (and, for a private repository, the credentials: some servers answer \"not found\" to strangers)")
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return &Error{Kind: ErrRefNotFound, Source: g.url, Ref: g.ref, Detail: "the repository has no commits yet"}
	case errors.Is(err, pktline.ErrInvalidPktLen), errors.Is(err, packp.ErrEmptyAdvRefs),
		strings.Contains(msg, "pkt-line"), strings.Contains(msg, "invalid pkt-len"),
		strings.Contains(msg, "advertised-refs"), strings.Contains(msg, "malformed"):
		return fail(ErrNotRepository, "the server answered, but not as a Git server; check the URL")
	case isNetError(err):
		return fail(ErrUnreachable, "check that the server is up and reachable from this host")
	}
	// Not an *Error: a failure capstan cannot place is treated as transient by callers.
	return fmt.Errorf("source %s%s: fetch failed: %w", g.url, refSuffix(g.ref), causeError{err})
}

func refSuffix(ref string) string {
	if ref == "" {
		return ""
	}
	return " (ref " + ref + ")"
}

// causeError shows an underlying error the way *Error does (shortened, URL userinfo
// masked) and still unwraps to it.
type causeError struct{ err error }

func (c causeError) Error() string { return causeText(c.err) }
func (c causeError) Unwrap() error { return c.err }

func (g *Git) isSSH() bool {
	return strings.HasPrefix(g.url, "ssh://") || scpLike.MatchString(g.url)
}

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.As(err, &oe), errors.As(err, &de), errors.As(err, &ne):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// go-git's HTTP transport reports 5xx answers as "unexpected ... status code: 5xx".
	msg := err.Error()
	return strings.Contains(msg, "status code: 5") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "no route to host") || strings.Contains(msg, "i/o timeout")
}
