package agent

import "bytes"

// The two rules of launchpad-buildd's lpbuildd/util.py sanitise_urls:
//
//  1. `://([^:@/]*:[^:@/]+@)(\S+)` → `://\2`: URL userinfo with a non-empty
//     password is dropped (a user alone is kept: it is no secret).
//  2. `,proxyauth=[^:]+:[A-Za-z0-9-]+` → "": socat's proxy credentials.
//
// The reference applies them to whole lines with regular expressions.
// Here they are a streaming transducer (lineSanitizer), for two reasons:
//
//   - A build can write a line of any length without a newline. Holding
//     the whole line is unbounded; cutting it and sanitising the pieces
//     alone (what this package did) lets a credential straddling the cut
//     through whole. The transducer holds back only an undecided
//     candidate (after "://", the bytes that may still turn out to be
//     userinfo), so nothing is ever cut inside a match and any chunking
//     of the input gives the same output.
//   - The reference's rule 1 consumes the rest of the URL (`\S+`), so a
//     second credential in the same word (`http://a:b@h/http://c:d@h2`,
//     or `://x:y@c:d@h`) survives it. The transducer applies rule 1 at
//     every "://" and again after each removal, until no "://" in the
//     output is followed by a user, ":", a password, "@" and a non-blank:
//     no URL credential of any kind is left. Rule 1 runs once more after
//     rule 2, since removing ",proxyauth=…" can join text into a URL
//     credential. On lines where the reference leaves no such credential
//     the output is the reference's, byte for byte
//     (TestSanitizeLineMatchesPython).
//
// A candidate is bounded by maxCandidate bytes. A user longer than that
// is emitted in blocks of maxCandidate (a user is no secret, and rule 1
// drops only the rest of it); a password longer than that is dropped as
// it comes, and if it turns out not to have been one (no "@" and
// non-blank after it) "<redacted>" marks what was dropped. Both happen at
// byte positions fixed by the input, so the output still does not depend
// on the chunking.
//
// Python's bytes `\S` is [^ \t\n\r\f\v]; userinfo and the proxyauth user
// may hold any other byte, including invalid UTF-8, as in the reference.
// A newline ends every candidate: the reference sanitises line by line.

// maxCandidate bounds what one candidate holds back.
const maxCandidate = 64 << 10

var (
	schemeSep      = []byte("://")
	proxyAuthToken = []byte(",proxyauth=")
)

// SanitizeLine applies the sanitising rules to one line of a build log (a
// trailing newline may be included). It returns line itself when nothing
// can match.
func SanitizeLine(line []byte) []byte { return SanitizeLines(line) }

// SanitizeLines applies SanitizeLine to every "\n"-terminated line of text
// (the last line may lack its newline), the way launchpad-buildd's
// sanitizeBuildlog streams a whole log. Text without "://" or ",proxyauth="
// is returned as is.
func SanitizeLines(text []byte) []byte {
	if !bytes.Contains(text, schemeSep) && !bytes.Contains(text, proxyAuthToken) {
		return text
	}
	var s lineSanitizer
	return s.sanitize(nil, text, true)
}

// lineSanitizer is the streaming sanitiser: rule 1 (urlStage), rule 2
// (proxyAuthStage), and rule 1 again, since removing ",proxyauth=…" can
// join text into a URL credential. The zero value is ready; max 0 means
// maxCandidate (tests make it small).
type lineSanitizer struct {
	url1 urlStage
	auth proxyAuthStage
	url2 urlStage
	mid  [2][]byte // the stages' outputs, reused
	max  int
}

// sanitize appends to dst what of p can be emitted now; with final set
// nothing is held back (end of the log).
func (s *lineSanitizer) sanitize(dst, p []byte, final bool) []byte {
	limit := s.max
	if limit <= 0 {
		limit = maxCandidate
	}
	s.url1.max, s.auth.max, s.url2.max = limit, limit, limit
	a := s.url1.feed(s.mid[0][:0], p)
	if final {
		a = s.url1.end(a)
	}
	b := s.auth.feed(s.mid[1][:0], a)
	if final {
		b = s.auth.end(b)
	}
	dst = s.url2.feed(dst, b)
	if final {
		dst = s.url2.end(dst)
	}
	s.mid[0], s.mid[1] = a[:0], b[:0]
	if cap(a) > 4*limit || cap(b) > 4*limit {
		s.mid = [2][]byte{}
	}
	return dst
}

// reset forgets anything held back.
func (s *lineSanitizer) reset() { *s = lineSanitizer{max: s.max} }

func isBlank(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v':
		return true
	}
	return false
}

// urlStage is rule 1. Its states:
type urlState uint8

const (
	urlText   urlState = iota // held: a proper prefix of "://" (":" or ":/")
	urlUser                   // after "://": held is the user so far
	urlPass                   // after the user's ":": held is what of user ":" password is not emitted
	urlAt                     // after the password's "@": the next byte decides
	urlDrop                   // a password over max: dropped as it comes
	urlDropAt                 // its "@" dropped too: the next byte decides
)

type urlStage struct {
	state urlState
	held  []byte
	pass  int  // password bytes seen (urlPass)
	split bool // user and ":" were emitted (a dropped password): after a removal, continue in urlPass
	max   int
}

// feed appends to dst what of p can be emitted.
func (u *urlStage) feed(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		c := p[i]
		switch u.state {
		case urlText:
			if len(u.held) == 0 {
				// Fast path: copy up to the next ":".
				j := bytes.IndexByte(p[i:], ':')
				if j < 0 {
					return append(dst, p[i:]...)
				}
				dst = append(dst, p[i:i+j]...)
				i += j
				u.held = append(u.held, ':')
				i++
				continue
			}
			if c == schemeSep[len(u.held)] {
				u.held = append(u.held, c)
				i++
				if len(u.held) == len(schemeSep) {
					dst = append(dst, schemeSep...)
					u.held = u.held[:0]
					u.state, u.split = urlUser, false
				}
				continue
			}
			// Not "://": emit the prefix; ":" may start another.
			dst = append(dst, u.held...)
			u.held = u.held[:0]
			if c != ':' {
				dst = append(dst, c)
			} else {
				u.held = append(u.held, c)
			}
			i++
		case urlUser:
			j := i
			for j < len(p) && !isUserStop(p[j]) {
				j++
			}
			for i < j {
				n := min(j-i, u.max-len(u.held))
				u.held = append(u.held, p[i:i+n]...)
				i += n
				if len(u.held) >= u.max {
					// A user is no secret: emit it a block at a time.
					dst = append(dst, u.held...)
					u.held = u.held[:0]
				}
			}
			if i == len(p) {
				return dst
			}
			if p[i] == ':' {
				u.held = append(u.held, ':')
				u.state, u.pass = urlPass, 0
				i++
				continue
			}
			dst = u.fail(dst)
		case urlPass:
			j := i
			for j < len(p) && !isUserStop(p[j]) {
				j++
			}
			u.held = append(u.held, p[i:j]...)
			u.pass += j - i
			i = j
			if len(u.held) > u.max {
				// Too long to hold: emit the user and ":", drop the
				// password from here on.
				dst = append(dst, u.held[:len(u.held)-u.pass]...)
				u.held = u.held[:0]
				u.state, u.split = urlDrop, true
				continue
			}
			if i == len(p) {
				return dst
			}
			if p[i] == '@' && u.pass > 0 {
				u.held = append(u.held, '@')
				u.state = urlAt
				i++
				continue
			}
			dst = u.fail(dst)
		case urlAt, urlDropAt:
			if !isBlank(c) {
				// A credential: drop it and look again at what follows
				// the same "://" (byte c is not consumed).
				u.held = u.held[:0]
				u.state, u.pass = urlUser, 0
				if u.split {
					u.state = urlPass
				}
				continue
			}
			if u.state == urlDropAt {
				dst = append(dst, redactedText...)
				u.state = urlText
				continue
			}
			dst = u.fail(dst)
		case urlDrop:
			j := i
			for j < len(p) && !isUserStop(p[j]) {
				j++
			}
			i = j
			if i == len(p) {
				return dst
			}
			if p[i] == '@' {
				u.state = urlDropAt
				i++
				continue
			}
			dst = append(dst, redactedText...)
			u.state = urlText
		}
	}
	return dst
}

// isUserStop: the bytes that end a run of userinfo ("[^:@/]" within a line).
func isUserStop(c byte) bool { return c == ':' || c == '@' || c == '/' || c == '\n' }

// fail ends a candidate that is no credential: what it held is emitted,
// but a trailing ":" may start a "://" with the byte that follows, which
// is looked at again in urlText.
func (u *urlStage) fail(dst []byte) []byte {
	h := u.held
	u.held = u.held[:0]
	u.state = urlText
	if n := len(h); n > 0 && h[n-1] == ':' {
		dst = append(dst, h[:n-1]...)
		u.held = append(u.held, ':')
		return dst
	}
	return append(dst, h...)
}

// end emits anything held back.
func (u *urlStage) end(dst []byte) []byte {
	switch u.state {
	case urlDrop, urlDropAt:
		dst = append(dst, redactedText...)
	default:
		dst = append(dst, u.held...)
	}
	*u = urlStage{held: u.held[:0], max: u.max}
	return dst
}

// proxyAuthStage is rule 2. Its states:
type authState uint8

const (
	authText authState = iota // held: a proper prefix of ",proxyauth="
	authUser                  // held: ",proxyauth=" and the user so far (what is not emitted)
	authPass                  // held: that and ":"; the next byte decides
	authDrop                  // in the password: dropped as it comes
)

type proxyAuthStage struct {
	state authState
	held  []byte
	user  int // user bytes seen
	max   int
}

func isAuthPass(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

func (a *proxyAuthStage) feed(dst, p []byte) []byte {
	for i := 0; i < len(p); {
		c := p[i]
		switch a.state {
		case authText:
			if len(a.held) == 0 {
				j := bytes.IndexByte(p[i:], ',')
				if j < 0 {
					return append(dst, p[i:]...)
				}
				dst = append(dst, p[i:i+j]...)
				i += j
				a.held = append(a.held, ',')
				i++
				continue
			}
			if c == proxyAuthToken[len(a.held)] {
				a.held = append(a.held, c)
				i++
				if len(a.held) == len(proxyAuthToken) {
					a.state, a.user = authUser, 0
				}
				continue
			}
			// "," occurs once in the token: only c itself may restart it.
			dst = append(dst, a.held...)
			a.held = a.held[:0]
			if c != ',' {
				dst = append(dst, c)
			} else {
				a.held = append(a.held, c)
			}
			i++
		case authUser:
			j := i
			for j < len(p) && p[j] != ':' && p[j] != '\n' {
				j++
			}
			for i < j {
				n := min(j-i, len(proxyAuthToken)+a.max-len(a.held))
				a.held = append(a.held, p[i:i+n]...)
				a.user += n
				i += n
				if len(a.held) >= len(proxyAuthToken)+a.max {
					// A user is no secret: emit it a block at a time.
					dst = append(dst, a.held...)
					a.held = a.held[:0]
				}
			}
			if i == len(p) {
				return dst
			}
			if p[i] == ':' && a.user > 0 {
				a.held = append(a.held, ':')
				a.state = authPass
				i++
				continue
			}
			dst = a.fail(dst)
		case authPass:
			if isAuthPass(c) {
				// A credential: everything held goes, and the password
				// with it as it comes.
				a.held = a.held[:0]
				a.state = authDrop
				i++
				continue
			}
			dst = a.fail(dst)
		case authDrop:
			for i < len(p) && isAuthPass(p[i]) {
				i++
			}
			if i < len(p) {
				a.state = authText
			}
		}
	}
	return dst
}

// fail ends a candidate that is no credential. Any ",proxyauth=" inside
// what it held reaches the same ":" and the same next byte, so it fails
// too: the held bytes are emitted as they are, and the byte that ended
// the candidate is looked at again in authText.
func (a *proxyAuthStage) fail(dst []byte) []byte {
	dst = append(dst, a.held...)
	a.held = a.held[:0]
	a.state = authText
	return dst
}

func (a *proxyAuthStage) end(dst []byte) []byte {
	if a.state != authDrop {
		dst = append(dst, a.held...)
	}
	*a = proxyAuthStage{held: a.held[:0], max: a.max}
	return dst
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
