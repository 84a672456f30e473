package source

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// Kinds of source failure. Every error from a Git source that has one of these causes is
// an *Error, so errors.Is(err, ErrHistoryRewritten) and friends work. In all cases the
// caller should keep the last good revision applied and retry later (the daemon) or fail
// with the message (the CLI); none of them means "the desired state is empty".
var (
	// ErrUnreachable: the server could not be reached (DNS, connection refused, timeout).
	ErrUnreachable = errors.New("git server unreachable")
	// ErrAuth: the server refused the credentials, or asked for some and got none.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey: the SSH server's host key is unknown or does not match known_hosts.
	ErrHostKey = errors.New("ssh host key verification failed")
	// ErrNotRepository: the URL does not lead to a Git repository.
	ErrNotRepository = errors.New("not a git repository")
	// ErrRefNotFound: the ref does not exist on the remote and never did in the cache.
	ErrRefNotFound = errors.New("ref not found")
	// ErrRefDeleted: the ref was fetched before and no longer exists on the remote.
	ErrRefDeleted = errors.New("ref deleted on the remote")
	// ErrHistoryRewritten: the branch's new head does not descend from the commit last
	// fetched (a force-push).
	ErrHistoryRewritten = errors.New("history rewritten")
	// ErrTagMoved: the tag points at another commit than when it was last fetched.
	ErrTagMoved = errors.New("tag moved")
	// ErrPathNotFound: --path does not exist (or is not a directory) in the revision.
	ErrPathNotFound = errors.New("path not found")
)

// Error is a source failure with its kind, the source (URL without credentials) and ref
// it concerns, and what to do about it.
type Error struct {
	// Kind is one of the Err* values above.
	Kind error
	// Source is the URL or directory, never with credentials.
	Source string
	// Ref is the ref as configured ("" for the default branch).
	Ref string
	// Detail says what happened, in this case's words.
	Detail string
	// Hint says what to do, when there is something to say.
	Hint string
	// Err is the underlying cause, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("source ")
	b.WriteString(e.Source)
	if e.Ref != "" {
		b.WriteString(" (ref ")
		b.WriteString(e.Ref)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(causeText(e.Err))
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrX) true for an *Error of kind ErrX.
func (e *Error) Is(target error) bool { return target == e.Kind }

func (e *Error) Unwrap() error { return e.Err }

// causeText shortens an underlying error for a one-line message: servers put whole HTML
// pages in error bodies. Userinfo in any URL is masked as a last line of defence; URLs
// handed to go-git never carry credentials in the first place.
func causeText(err error) string {
	s := redactURLs(err.Error())
	s = strings.Join(strings.Fields(s), " ")
	const max = 240
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

var userinfoInURL = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)

func redactURLs(s string) string { return userinfoInURL.ReplaceAllString(s, "${1}") }

// RedactURL removes credentials from a Git URL: the password of an http(s) URL and the
// whole userinfo except an ssh user name (git@ is part of the address, not a secret).
func RedactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw // scp-like user@host:path holds no password
	}
	u, err := url.Parse(raw)
	if err != nil {
		return redactURLs(raw)
	}
	if u.User == nil {
		return raw
	}
	if u.Scheme == "ssh" {
		u.User = url.User(u.User.Username())
	} else {
		u.User = nil
	}
	return u.String()
}
