package agent

import (
	"bytes"
	"regexp"
)

// The two rules of launchpad-buildd's lpbuildd/util.py sanitise_urls, kept
// byte for byte so that our logs read like the reference's:
//
//  1. `://([^:@/]*:[^:@/]+@)(\S+)` → `://\2`: URL userinfo with a non-empty
//     password is dropped (a user alone is kept: it is no secret).
//  2. `,proxyauth=[^:]+:[A-Za-z0-9-]+` → "": socat's proxy credentials.
//
// Python's bytes `\S` is [^ \t\n\r\f\v]; Go's `\S` lacks \v, so it is spelt
// out. Go's negated classes match any byte of invalid UTF-8 (as U+FFFD), as
// Python's bytes patterns do.
var (
	urlCredentials = regexp.MustCompile(`://([^:@/]*:[^:@/]+@)([^ \t\n\r\f\v]+)`)
	proxyAuth      = regexp.MustCompile(`,proxyauth=[^:]+:[A-Za-z0-9-]+`)
)

var (
	schemeSep      = []byte("://")
	proxyAuthToken = []byte(",proxyauth=")
)

// SanitizeLine applies launchpad-buildd's two sanitising rules to one line of
// a build log (a trailing newline may be included). It returns line itself
// when nothing can match, which substring searches decide in most cases
// without the regular expressions.
func SanitizeLine(line []byte) []byte {
	if i := bytes.Index(line, schemeSep); i >= 0 && bytes.IndexByte(line[i:], '@') >= 0 {
		line = urlCredentials.ReplaceAll(line, []byte("://$2"))
	}
	if bytes.Contains(line, proxyAuthToken) {
		line = proxyAuth.ReplaceAll(line, nil)
	}
	return line
}

// SanitizeLines applies SanitizeLine to every "\n"-terminated line of text
// (the last line may lack its newline), the way launchpad-buildd's
// sanitizeBuildlog streams a whole log. Text without "://" or ",proxyauth="
// is returned as is without being split.
func SanitizeLines(text []byte) []byte { return appendSanitized(nil, text) }

// appendSanitized is SanitizeLines appending to dst; it returns text itself
// (not dst) when nothing can match. Only the lines holding "://" or
// ",proxyauth=" are looked at line by line; the rest is copied in bulk.
func appendSanitized(dst, text []byte) []byte {
	nextScheme := bytes.Index(text, schemeSep)
	nextProxy := bytes.Index(text, proxyAuthToken)
	if nextScheme < 0 && nextProxy < 0 {
		return text
	}
	for {
		i := nextScheme
		if i < 0 || (nextProxy >= 0 && nextProxy < i) {
			i = nextProxy
		}
		if i < 0 {
			return append(dst, text...)
		}
		start := bytes.LastIndexByte(text[:i], '\n') + 1
		end := len(text)
		if n := bytes.IndexByte(text[i:], '\n'); n >= 0 {
			end = i + n + 1
		}
		dst = append(dst, text[:start]...)
		dst = append(dst, SanitizeLine(text[start:end])...)
		text = text[end:]
		// Find the next candidates in what is left, searching again only
		// for those the line consumed.
		if nextScheme >= 0 {
			if nextScheme -= end; nextScheme < 0 {
				nextScheme = bytes.Index(text, schemeSep)
			}
		}
		if nextProxy >= 0 {
			if nextProxy -= end; nextProxy < 0 {
				nextProxy = bytes.Index(text, proxyAuthToken)
			}
		}
	}
}

// redactedText replaces every occurrence of a registered secret.
const redactedText = "<redacted>"

// secretMasker replaces secrets by value in a stream, like buildkite-agent's
// internal/replacer: it holds back the end of what it was given while that
// end could still be the start of a secret, so that a secret split across
// two writes is masked all the same. Overlapping occurrences (of one secret
// or several) are merged into one "<redacted>". It is not safe for
// concurrent use; BuildLog serialises it.
type secretMasker struct {
	secrets [][]byte
	held    []byte // not yet emitted: a possible secret prefix, or an occurrence that may still grow
	maxHold int
}

// add registers a secret; empty and duplicate secrets are ignored.
func (m *secretMasker) add(s []byte) {
	if len(s) == 0 {
		return
	}
	for _, old := range m.secrets {
		if bytes.Equal(old, s) {
			return
		}
	}
	m.secrets = append(m.secrets, bytes.Clone(s))
	m.maxHold = max(m.maxHold, minSecretHold, 2*len(s))
}

// minSecretHold bounds what overlapping occurrences may hold back.
const minSecretHold = 64 << 10

// reset forgets the secrets and anything held back.
func (m *secretMasker) reset() {
	m.secrets = nil
	m.held = nil
}

// interval is a half-open byte range [start, end) of a buffer.
type interval struct{ start, end int }

// occurrences returns the merged ranges of b covered by secrets, in order.
func (m *secretMasker) occurrences(b []byte) []interval {
	var found []interval
	for _, s := range m.secrets {
		for off := 0; ; {
			i := bytes.Index(b[off:], s)
			if i < 0 {
				break
			}
			found = append(found, interval{off + i, off + i + len(s)})
			off += i + 1 // overlapping occurrences count too
		}
	}
	if len(found) < 2 {
		return found
	}
	sortIntervals(found)
	merged := found[:1]
	for _, iv := range found[1:] {
		last := &merged[len(merged)-1]
		if iv.start < last.end {
			last.end = max(last.end, iv.end)
			continue
		}
		merged = append(merged, iv)
	}
	return merged
}

// sortIntervals sorts by start (insertion sort: the lists are tiny).
func sortIntervals(ivs []interval) {
	for i := 1; i < len(ivs); i++ {
		for j := i; j > 0 && ivs[j].start < ivs[j-1].start; j-- {
			ivs[j], ivs[j-1] = ivs[j-1], ivs[j]
		}
	}
}

// partialStart is the index where the longest suffix of b that is a proper
// prefix of some secret begins (len(b) when there is none).
func (m *secretMasker) partialStart(b []byte) int {
	start := len(b)
	for _, s := range m.secrets {
		// Only suffixes longer than the current best matter.
		from := max(len(b)-(len(s)-1), 0)
		for i := from; i < start; i++ {
			if b[i] == s[0] && bytes.HasPrefix(s, b[i:]) {
				start = i
				break
			}
		}
	}
	return start
}

// mask appends to dst what of p (after what was held back) can be emitted
// now, with secrets replaced, and holds back the rest. With final set
// nothing is held back.
func (m *secretMasker) mask(dst, p []byte, final bool) []byte {
	if len(m.secrets) == 0 {
		dst = append(dst, m.held...)
		m.held = m.held[:0]
		return append(dst, p...)
	}
	b := p
	if len(m.held) > 0 {
		b = append(m.held, p...)
	}
	occ := m.occurrences(b)
	emit := len(b)
	if !final {
		emit = m.partialStart(b)
		// An occurrence reaching past the emission point may still merge
		// with a later one: hold it back whole, unless holding grew
		// beyond reason (pathological overlaps), then it is emitted masked.
		for _, iv := range occ {
			if iv.start < emit && emit < iv.end {
				if len(b)-iv.start <= m.maxHold {
					emit = iv.start
				} else {
					emit = iv.end
				}
				break
			}
		}
		if len(b)-emit > m.maxHold {
			// A held prefix of a secret cannot be this long; kept for safety.
			emit = len(b) - m.maxHold
		}
	}
	pos := 0
	for _, iv := range occ {
		if iv.start >= emit {
			break
		}
		dst = append(dst, b[pos:iv.start]...)
		dst = append(dst, redactedText...)
		pos = iv.end
	}
	if pos < emit {
		dst = append(dst, b[pos:emit]...)
	}
	rest := b[max(pos, emit):]
	m.held = append(m.held[:0:0], rest...)
	return dst
}
