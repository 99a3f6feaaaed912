package proxy

// Reading and checking HTTP/1.1 message heads for the fast path
// (fastpath.go) without net/http: a head is read into a reusable buffer and
// its lines are kept as offsets into it, so that a request costs no header
// map and almost no allocation. Anything this parser is not sure of makes
// the fast path hand the connection to net/http + goproxy, which then
// answers exactly as before (400s included).

import (
	"bufio"
	"bytes"
	"errors"
)

// maxFastHead bounds a head the fast path reads; a longer request head is
// handed to net/http (its limit is 1 MiB), a longer response head is a 502.
const maxFastHead = 64 << 10

var (
	errHeadTooLong = errors.New("message head too long")
	errBadHead     = errors.New("malformed message head")
)

// head is one message head: raw bytes and the [start, end) of each line
// without its line ending. lines[0] is the start line.
type head struct {
	buf   []byte
	lines [][2]int
}

func (h *head) reset() {
	h.buf = h.buf[:0]
	h.lines = h.lines[:0]
}

func (h *head) line(i int) []byte { return h.buf[h.lines[i][0]:h.lines[i][1]] }

// read reads a head up to and including its empty line. Lines end in CRLF
// or LF (as net/http accepts).
func (h *head) read(br *bufio.Reader) error {
	h.reset()
	for {
		start := len(h.buf)
		for {
			frag, err := br.ReadSlice('\n')
			h.buf = append(h.buf, frag...)
			if len(h.buf) > maxFastHead {
				return errHeadTooLong
			}
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				return err
			}
		}
		end := len(h.buf) - 1
		if end > start && h.buf[end-1] == '\r' {
			end--
		}
		if end == start {
			if len(h.lines) == 0 {
				return errBadHead // an empty line before the start line
			}
			return nil
		}
		h.lines = append(h.lines, [2]int{start, end})
	}
}

// field splits header line i into name and value (value trimmed of
// optional white space); ok is false for a line that is not a valid field
// (bad name, control characters, obsolete line folding).
func (h *head) field(i int) (name, value []byte, ok bool) {
	l := h.line(i)
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name = l[:colon]
	for _, c := range name {
		if !isTokenChar[c] {
			return nil, nil, false
		}
	}
	value = l[colon+1:]
	for _, c := range value {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

// isTokenChar: RFC 9110 tchar.
var isTokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// eqFold is ASCII case-insensitive equality of a header name or token.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken: a comma-separated header value lists token (case-insensitive).
func hasToken(value []byte, token string) bool {
	for len(value) > 0 {
		var t []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			t, value = value[:i], value[i+1:]
		} else {
			t, value = value, nil
		}
		if eqFold(bytes.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

// listedIn: name is one of the tokens of any of the Connection values.
func listedIn(name []byte, conn [][]byte) bool {
	for _, v := range conn {
		for len(v) > 0 {
			var t []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				t, v = v[:i], v[i+1:]
			} else {
				t, v = v, nil
			}
			if t = bytes.Trim(t, " \t"); len(t) > 0 && bytes.EqualFold(t, name) {
				return true
			}
		}
	}
	return false
}

// isHopByHop: the names removeHopByHop drops, plus Proxy-Authenticate
// (goproxy's RemoveProxyHeaders drops it from requests).
func isHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return eqFold(name, "TE")
	case 7:
		return eqFold(name, "Trailer") || eqFold(name, "Upgrade")
	case 10:
		return eqFold(name, "Connection") || eqFold(name, "Keep-Alive")
	case 16:
		return eqFold(name, "Proxy-Connection")
	case 17:
		return eqFold(name, "Transfer-Encoding")
	case 18:
		return eqFold(name, "Proxy-Authenticate")
	case 19:
		return eqFold(name, "Proxy-Authorization")
	}
	return false
}

// parseLength parses a Content-Length value: digits only.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line (hex digits, then optional
// extensions after ';').
func parseChunkSize(l []byte) (int64, bool) {
	if i := bytes.IndexByte(l, ';'); i >= 0 {
		l = l[:i]
	}
	l = bytes.TrimRight(l, " \t")
	if len(l) == 0 || len(l) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range l {
		switch c = lower(c); {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}
