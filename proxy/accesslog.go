package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// record is what one access line says about a request.
type record struct {
	method, uri, proto string
	referer, userAgent string
	status             atomic.Int32 // a tunnel may be logged by Stop while it is being set
	bytes              atomic.Int64
}

type recordKey struct{}

func newRecord(r *http.Request) *record {
	return &record{
		method: r.Method, uri: r.RequestURI, proto: r.Proto,
		referer: r.Referer(), userAgent: r.UserAgent(),
	}
}

func recordOf(r *http.Request) *record {
	if r == nil {
		return nil
	}
	rec, _ := r.Context().Value(recordKey{}).(*record)
	return rec
}

// accessTimeFormat is the reference's "[28/Nov/2026:12:00:00 +0000]".
const accessTimeFormat = "02/Jan/2006:15:04:05 -0700"

// formatAccess renders the reference's access line (Twisted's combined log
// without the client address and identities):
// [DD/Mon/YYYY:HH:MM:SS +0000] "METHOD URI PROTO" code bytes "referer" "user-agent"
func formatAccess(t time.Time, rec *record) string {
	return string(appendAccess(nil, t, rec.method, rec.uri, rec.proto, rec.referer, rec.userAgent, rec.status.Load(), rec.bytes.Load()))
}

// appendAccess appends formatAccess's line; the fast path gives it byte
// slices of the request head, the goproxy path strings.
func appendAccess[S string | []byte](b []byte, t time.Time, method, uri, proto, referer, userAgent S, status int32, n int64) []byte {
	b = append(b, '[')
	b = t.UTC().AppendFormat(b, accessTimeFormat)
	b = append(b, "] \""...)
	b = appendEscaped(b, method)
	b = append(b, ' ')
	b = appendEscaped(b, uri)
	b = append(b, ' ')
	b = appendEscaped(b, proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if n > 0 {
		b = strconv.AppendInt(b, n, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, " \""...)
	b = appendEscapedOr(b, referer)
	b = append(b, "\" \""...)
	b = appendEscapedOr(b, userAgent)
	return append(b, "\"\n"...)
}

func appendEscapedOr[S string | []byte](b []byte, s S) []byte {
	if len(s) == 0 {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendEscaped keeps one request on one line and quotes balanced.
func appendEscaped[S string | []byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

func (p *Proxy) logAccess(rec *record) {
	if p.stopped.Load() {
		return
	}
	rec.status.CompareAndSwap(0, http.StatusBadGateway)
	p.writeAccess(appendAccess(nil, time.Now(), rec.method, rec.uri, rec.proto, rec.referer, rec.userAgent, rec.status.Load(), rec.bytes.Load()))
}

// logFast writes a fast-path request's access line.
func (p *Proxy) logFast(r *fastReq, status int, n int64) {
	if p.stopped.Load() {
		return
	}
	bp := accessLines.Get().(*[]byte)
	*bp = appendAccess((*bp)[:0], time.Now(), r.method, r.target, []byte("HTTP/1.1"), r.referer, r.userAgent, int32(status), n)
	p.writeAccess(*bp)
	accessLines.Put(bp)
}

var accessLines = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeAccess masks the job's secrets (which only a build could have put
// into a URL or header) and adds one line to the build log.
//
// Lines are batched while other fast-path requests are in flight: under
// load one write of the build log (a syscall, and the build log's
// sanitiser) per request was a sixth of the proxy's CPU. A line is written
// at once when nothing else is in flight (a lone client, the tests), when
// accessBatch bytes are waiting, or accessFlushDelay after it came, so the
// build log stays live; Stop and every other build-log write flush first.
func (p *Proxy) writeAccess(line []byte) {
	for _, s := range p.secrets {
		if bytes.Contains(line, []byte(s)) {
			line = []byte(p.mask.Replace(string(line)))
			break
		}
	}
	p.logMu.Lock()
	defer p.logMu.Unlock()
	p.logBuf = append(p.logBuf, line...)
	switch {
	case p.inflight.Load() == 0 || len(p.logBuf) >= accessBatch || p.stopped.Load():
		p.flushAccessLocked()
	case !p.logPending:
		p.logPending = true
		if p.logTimer == nil {
			p.logTimer = time.AfterFunc(accessFlushDelay, p.flushAccess)
		} else {
			p.logTimer.Reset(accessFlushDelay)
		}
	}
}

const (
	accessBatch      = 8 << 10
	accessFlushDelay = 100 * time.Millisecond
)

// flushAccess writes the waiting access lines.
func (p *Proxy) flushAccess() {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	p.flushAccessLocked()
}

func (p *Proxy) flushAccessLocked() {
	if p.logPending {
		p.logTimer.Stop()
		p.logPending = false
	}
	if len(p.logBuf) == 0 {
		return
	}
	p.cfg.Log.Write(p.logBuf)
	if cap(p.logBuf) > 4*accessBatch {
		p.logBuf = nil // a burst of long lines: do not keep its buffer
	} else {
		p.logBuf = p.logBuf[:0]
	}
}

// recordingWriter notes the status and body size of a response and wraps
// hijacked connections so that tunnels are counted, tracked and logged.
type recordingWriter struct {
	http.ResponseWriter
	rec      *record
	p        *Proxy
	wrote    bool
	hijacked *clientConn
}

func (w *recordingWriter) WriteHeader(code int) {
	if !w.wrote && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.wrote = true
		w.rec.status.Store(int32(code))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.wrote = true
		w.rec.status.Store(int32(http.StatusOK))
	}
	n, err := w.ResponseWriter.Write(b)
	w.rec.bytes.Add(int64(n))
	return n, err
}

func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("cannot hijack %T", w.ResponseWriter)
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	cc := &clientConn{Conn: c, rec: w.rec, p: w.p}
	cc.tcp, _ = c.(*net.TCPConn)
	cc.splice = cc.tcp != nil
	if hc, ok := c.(*handoffConn); ok {
		// Handed over by the fast path: splice once nothing it read is left.
		cc.tcp, _ = hc.Conn.(*net.TCPConn)
		cc.splice = cc.tcp != nil && hc.drained()
	}
	w.hijacked = cc
	w.p.mu.Lock()
	w.p.tunnels[cc] = struct{}{}
	w.p.mu.Unlock()
	// Bytes goproxy writes through rw.Writer would bypass the count; it
	// writes to the connection itself, but keep rw consistent anyway.
	rw.Writer.Reset(cc)
	return cc, rw, nil
}

// clientConn is a hijacked client connection (CONNECT tunnel or WebSocket).
// It embeds net.Conn rather than *net.TCPConn so TCPConn's ReadFrom/WriteTo
// are not promoted past the byte count; its own keep the splice path.
type clientConn struct {
	net.Conn
	tcp    *net.TCPConn // for half-closes
	splice bool         // tcp can be read and written directly
	rec    *record
	p      *Proxy
	once   sync.Once
}

func (c *clientConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.rec.bytes.Add(int64(n))
	return n, err
}

func (c *clientConn) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if c.splice {
		n, err = c.tcp.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.Conn}, r)
	}
	c.rec.bytes.Add(n)
	return n, err
}

func (c *clientConn) WriteTo(w io.Writer) (int64, error) {
	if c.splice {
		return c.tcp.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}

func (c *clientConn) CloseWrite() error {
	if c.tcp != nil {
		return c.tcp.CloseWrite()
	}
	return nil
}

func (c *clientConn) CloseRead() error {
	if c.tcp != nil {
		return c.tcp.CloseRead()
	}
	return nil
}

// Close closes the connection once and writes its access line.
func (c *clientConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.p.mu.Lock()
		delete(c.p.tunnels, c)
		c.p.mu.Unlock()
		c.p.logAccess(c.rec)
	})
	return err
}

// slogErrorLog sends net/http's server errors (TLS junk, header
// overflows) to the agent log at debug level, masked.
func slogErrorLog(p *Proxy) *log.Logger {
	return log.New(writerFunc(func(b []byte) (int, error) {
		p.logger.Log(context.Background(), -4, strings.TrimSpace(p.clean(string(b))), "component", "http")
		return len(b), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
