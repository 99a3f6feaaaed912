// Package redact removes credentials from text before it reaches the
// agent's own log: URL userinfo (with or without a password: a user alone
// is often a token, as in http://TOKEN@host) and the values of token-like
// query parameters. It works on any text, not only on a URL that parses:
// a URL that net/url refuses, a Location header, or an error message that
// quotes a URL are all redacted the same way, because the scan needs
// nothing but "://", "@", "?" and the characters that end a URL.
//
// It is a leaf package so that every package that logs (agent, proxy, vcs,
// builders, cmd) can use the same rule.
package redact

import "strings"

// Mask replaces what is removed.
const Mask = "xxxxx"

// String returns s with the userinfo of every URL and the values of
// token-like query parameters replaced by Mask.
func String(s string) string {
	if !strings.Contains(s, "://") && !strings.Contains(s, "?") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for len(s) > 0 {
		// Copy separators as they are; redact each URL-like word.
		i := strings.IndexFunc(s, isWordByte)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		j := strings.IndexFunc(s, func(r rune) bool { return !isWordByte(r) })
		if j < 0 {
			j = len(s)
		}
		writeWord(&b, s[:j])
		s = s[j:]
	}
	return b.String()
}

// isWordByte reports whether r can be part of a URL as it appears in text:
// whitespace, quotes and angle brackets end one (Go quotes URLs in errors
// with %q, people with <> or quotes).
func isWordByte(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '\v', '\f', '"', '\'', '`', '<', '>':
		return false
	}
	return true
}

// writeWord writes one word with the userinfo of each URL in it and its
// token-like query values masked.
func writeWord(b *strings.Builder, w string) {
	// Userinfo: the authority runs from "://" to the first "/", "?" or
	// "#"; its last "@" ends the userinfo. A word can hold several URLs
	// (one in another's query or path): each "://" is looked at.
	var out strings.Builder
	rest := w
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			out.WriteString(rest)
			break
		}
		out.WriteString(rest[:i+3])
		rest = rest[i+3:]
		if at := userinfoEnd(rest); at >= 0 {
			out.WriteString(Mask)
			rest = rest[at:]
		}
	}
	w = out.String()
	// A word without "://" may still carry an "@" before a host (a git
	// remote "TOKEN@host:path" is not a URL, and is left alone), but a
	// query string is masked wherever it is.
	q := strings.IndexByte(w, '?')
	if q < 0 {
		b.WriteString(w)
		return
	}
	b.WriteString(w[:q+1])
	query := w[q+1:]
	frag := ""
	if h := strings.IndexByte(query, '#'); h >= 0 {
		query, frag = query[:h], query[h:]
	}
	writeQuery(b, query)
	b.WriteString(frag)
}

// userinfoEnd returns the index of the "@" that ends the userinfo at the
// start of rest (what follows "://"), or -1. The authority ends at the
// first "/", "?" or "#", and its last "@" ends the userinfo. A password
// holding a raw "/", "?" or "#" (an unparsable URL) would end the
// authority early: when what precedes that character holds a ":" and an
// "@" follows before the next URL, that "@" is taken as the end of the
// userinfo. This can mask a host:port in front of a path holding "@"; in
// the agent's log, masking too much is the right way to be wrong.
func userinfoEnd(rest string) int {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		return strings.LastIndexByte(rest, '@')
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		return at
	}
	if !strings.Contains(rest[:end], ":") {
		return -1
	}
	limit := len(rest)
	if n := strings.Index(rest[end:], "://"); n >= 0 {
		limit = end + n
	}
	if at := strings.IndexByte(rest[end:limit], '@'); at >= 0 {
		return end + at
	}
	return -1
}

// writeQuery writes a raw query with token-like values masked, keeping
// its separators.
func writeQuery(b *strings.Builder, q string) {
	for q != "" {
		end := strings.IndexAny(q, "&;")
		sep := ""
		part := q
		if end >= 0 {
			part, sep, q = q[:end], q[end:end+1], q[end+1:]
		} else {
			q = ""
		}
		key, _, hasValue := strings.Cut(part, "=")
		if hasValue && secretKey(key) {
			b.WriteString(key)
			b.WriteString("=")
			b.WriteString(Mask)
		} else {
			b.WriteString(part)
		}
		b.WriteString(sep)
	}
}

// secretWords are what the names of credential-carrying query parameters
// contain (token, access_token, api_key, X-Amz-Signature, X-Amz-Credential,
// X-Goog-Credential, sig, password, macaroon, auth, secret, session).
var secretWords = []string{"token", "key", "sig", "pass", "secret", "auth", "cred", "macaroon", "session", "code"}

func secretKey(key string) bool {
	k := strings.ToLower(key)
	if i := strings.IndexByte(k, '%'); i >= 0 {
		k = strings.NewReplacer("%5f", "_", "%2d", "-").Replace(k)
	}
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
