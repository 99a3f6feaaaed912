package vcs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/buildd-agent/buildd-agent/internal/redact"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// checkoutError is what Checkout returns: a one-line message already
// sanitised, and the sentinels it matches. It deliberately does not unwrap
// to the underlying go-git error, whose text may hold credentials.
type checkoutError struct {
	msg   string
	kinds []error
}

func (e *checkoutError) Error() string   { return e.msg }
func (e *checkoutError) Unwrap() []error { return e.kinds }

// sentinels are the errors a caller may test with errors.Is.
var sentinels = []error{
	ErrUnsupportedURL, ErrRepositoryNotFound, ErrAuthentication, ErrEmptyRepository,
	ErrUnknownRef, ErrNotCommit, ErrNotOnBranch, ErrUnsafePath, ErrNetwork, ErrDestination,
	context.Canceled, context.DeadlineExceeded,
}

// userinfoRE matches the user:password@ of a URL the way the reference's
// build-log sanitiser does (lpbuildd/util.py), and also a bare user@ .
var userinfoRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@`) })

// sanitizer removes credentials from text that may contain URLs.
type sanitizer struct{ secrets []string }

// addURL records the credentials of a URL so that they are removed even
// where they appear outside a URL (a go-git message quoting the password).
func (s *sanitizer) addURL(raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		// An unparsable URL may still carry credentials: remember the
		// userinfo part verbatim.
		if i := strings.Index(raw, "://"); i >= 0 {
			rest := raw[i+3:]
			if j := strings.LastIndex(rest, "@"); j > 0 {
				s.add(rest[:j])
			}
		}
		return
	}
	if p, ok := u.User.Password(); ok {
		s.add(p)
		s.add(url.QueryEscape(p))
		s.add(url.PathEscape(p))
	}
}

func (s *sanitizer) add(secret string) {
	if len(secret) >= 3 {
		s.secrets = append(s.secrets, secret)
	}
}

// clean makes msg one line without credentials.
func (s *sanitizer) clean(msg string) string {
	msg = redact.String(userinfoRE().ReplaceAllString(msg, "$1"))
	for _, sec := range s.secrets {
		msg = strings.ReplaceAll(msg, sec, "<redacted>")
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return msg
}

// redactURL prints a URL without its credentials: the userinfo is
// dropped as the build-log sanitiser does, and redact.String masks what
// that leaves (token-like query values, the userinfo of a URL whose
// password holds a raw "/").
func redactURL(raw string) string {
	return redact.String(userinfoRE().ReplaceAllString(raw, "$1"))
}

// wrapError turns any error into a sanitised one-line checkoutError that
// keeps the sentinels (and context errors) it matches.
func (s *sanitizer) wrapError(err error) error {
	if err == nil {
		return nil
	}
	ce := &checkoutError{msg: s.clean(err.Error())}
	for _, k := range sentinels {
		if errors.Is(err, k) {
			ce.kinds = append(ce.kinds, k)
		}
	}
	return ce
}

// classify maps go-git's transport errors to our sentinels.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return ErrRepositoryNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return ErrEmptyRepository
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return ErrAuthentication
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case proxyAuthFailed(err):
		return ErrAuthentication
	case transient(err):
		return ErrNetwork
	}
	return nil
}

// proxyAuthFailed recognises the proxy refusing the build's credentials
// (HTTP 407), which go-git reports as an unexpected status.
func proxyAuthFailed(err error) bool {
	var he *githttp.Err
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) {
		errors.As(ue.Err, &he)
	}
	if he == nil && !errors.As(err, &he) {
		return false
	}
	return he.Response != nil && he.Response.StatusCode == 407
}

// transient says whether retrying err may help: the network, or the
// server failing (HTTP 5xx, 429), not a definite answer.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository),
		errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, git.ErrExactSHA1NotSupported):
		return false
	}
	var he *githttp.Err
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) {
		// go-git wraps HTTP status errors in an UnexpectedError that does not unwrap.
		errors.As(ue.Err, &he)
	}
	if he != nil || errors.As(err, &he) {
		c := he.Response.StatusCode
		return c >= 500 || c == 429 || c == 408
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// go-git flattens some network failures into strings.
	msg := err.Error()
	for _, s := range []string{"connection reset", "connection refused", "unexpected EOF", "broken pipe", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// kindError attaches a sentinel to an error without changing its message.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// withKind attaches the sentinel classify finds, if any.
func withKind(err error) error {
	if k := classify(err); k != nil && !errors.Is(err, k) {
		return kindError{err, k}
	}
	return err
}
