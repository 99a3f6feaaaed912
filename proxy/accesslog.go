package proxy

import (
	"bufio"
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
	n := rec.bytes.Load()
	size := "-"
	if n > 0 {
		size = strconv.FormatInt(n, 10)
	}
	ref, ua := rec.referer, rec.userAgent
	if ref == "" {
		ref = "-"
	}
	if ua == "" {
		ua = "-"
	}
	return fmt.Sprintf("[%s] \"%s %s %s\" %d %s \"%s\" \"%s\"\n",
		t.UTC().Format(accessTimeFormat), escape(rec.method), escape(rec.uri), escape(rec.proto),
		rec.status.Load(), size, escape(ref), escape(ua))
}

// escape keeps one request on one line and quotes balanced.
func escape(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
		return s
	}
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (p *Proxy) logAccess(rec *record) {
	if p.stopped.Load() {
		return
	}
	rec.status.CompareAndSwap(0, http.StatusBadGateway)
	line := p.mask.Replace(formatAccess(time.Now(), rec))
	p.logMu.Lock()
	defer p.logMu.Unlock()
	io.WriteString(p.cfg.Log, line)
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
	tcp  *net.TCPConn
	rec  *record
	p    *Proxy
	once sync.Once
}

func (c *clientConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.rec.bytes.Add(int64(n))
	return n, err
}

func (c *clientConn) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if c.tcp != nil {
		n, err = c.tcp.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.Conn}, r)
	}
	c.rec.bytes.Add(n)
	return n, err
}

func (c *clientConn) WriteTo(w io.Writer) (int64, error) {
	if c.tcp != nil {
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
