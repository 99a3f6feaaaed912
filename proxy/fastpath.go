package proxy

// The fast path: plain HTTP/1.1 proxy requests (absolute http:// URI, no
// upgrade, no Expect) are forwarded here,
// on the client connection's own goroutine, over a pooled keep-alive
// connection to the upstream: no per-request goroutine, header map or
// channel hand-off (net/http's server starts a goroutine per request for
// its background read, and its Transport hands every request to two more),
// which is what made the proxy cost more CPU per request than squid.
//
// Request bodies (Content-Length or chunked) go through as they arrive, on
// a fresh upstream connection (a body cannot be replayed if squid closes an
// idle one just then); an upstream that stops reading the body and answers
// early has its answer relayed. Everything else (CONNECT, WebSocket and
// other upgrades, Expect: 100-continue, HTTP/1.0, requests after the cut-off,
// malformed or unusual heads) is handed, with the bytes already read, to
// net/http + goproxy (ServeHTTP), which keeps that connection from then
// on: those answers are exactly what they were before the fast path.
//
// What a fast-path request sees is what the goproxy path gives: hop-by-hop
// headers and those named by Connection dropped both ways, the job's
// Proxy-Authorization added, Host taken from the request URI, Go's
// User-Agent when the client sent none, 1xx answers skipped, 502 pages from
// badGateway, the same access line.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

const (
	clientBufSize     = 4 << 10
	clientIdleTimeout = 60 * time.Second       // http.Server's IdleTimeout and ReadHeaderTimeout here
	lingerTimeout     = 500 * time.Millisecond // net/http's rstAvoidanceDelay
)

var (
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientBufSize) }}
	clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientBufSize) }}
)

// fastConn is one client connection served by the fast path.
type fastConn struct {
	p        *Proxy
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	req      head
	resp     head
	r        fastReq
	deadline time.Time // the read deadline last set on c
	bodyDone bool      // the request body was read whole
}

// fastReq is what the fast path needs of a request head; the slices point
// into fastConn.req.buf.
type fastReq struct {
	method, target, host []byte
	referer, userAgent   []byte
	hasUA                bool
	length               int64 // request body length
	chunked              bool  // the request body is chunked
	close                bool  // the client asked to close after this request
	conn                 [][]byte
}

// acceptLoop accepts client connections and serves each on its goroutine.
func (p *Proxy) acceptLoop() {
	defer close(p.acceptDone)
	var delay time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.closing() {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.logger.Debug("builder proxy: accept failed", "err", p.clean(err.Error()), "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go p.serveConn(c)
	}
}

func (p *Proxy) serveConn(c net.Conn) {
	if !p.trackConn(c) {
		c.Close()
		return
	}
	fc := &fastConn{p: p, c: c, br: clientReaders.Get().(*bufio.Reader), bw: clientWriters.Get().(*bufio.Writer)}
	fc.br.Reset(c)
	fc.bw.Reset(c)
	handedOff := false
	defer func() {
		p.untrackConn(c)
		fc.bw.Reset(nil)
		clientWriters.Put(fc.bw)
		if !handedOff {
			c.Close()
			fc.br.Reset(nil)
			clientReaders.Put(fc.br)
		}
	}()
	for {
		fc.setDeadline()
		err := fc.req.read(fc.br)
		if err != nil && !errors.Is(err, errHeadTooLong) && !errors.Is(err, errBadHead) {
			return // the client went away or idled out
		}
		if err != nil || p.cutOff.Load() || !fc.parseRequest() {
			handedOff = true
			p.handoff(&handoffConn{Conn: c, prefix: bytes.Clone(fc.req.buf), br: fc.br})
			return
		}
		if !fc.serve() {
			return
		}
	}
}

// setDeadline bounds the wait for the next request head (idle keep-alive
// and slow heads alike), without touching the timer on every request.
func (fc *fastConn) setDeadline() {
	now := time.Now()
	if fc.deadline.Sub(now) < clientIdleTimeout-time.Second {
		fc.deadline = now.Add(clientIdleTimeout)
		fc.c.SetReadDeadline(fc.deadline)
	}
}

// parseRequest fills fc.r from fc.req; false means "not for the fast path".
func (fc *fastConn) parseRequest() bool {
	h, r := &fc.req, &fc.r
	*r = fastReq{conn: r.conn[:0], length: 0}
	start := h.line(0)
	sp1 := bytes.IndexByte(start, ' ')
	if sp1 <= 0 {
		return false
	}
	rest := start[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	r.method, r.target = start[:sp1], rest[:sp2]
	for _, c := range r.method {
		if !isTokenChar[c] {
			return false
		}
	}
	if string(r.method) == "CONNECT" || len(r.target) <= len("http://") || string(r.target[:7]) != "http://" {
		return false
	}
	for _, c := range r.target {
		// Userinfo and fragments are for net/url to judge.
		if c <= ' ' || c >= 0x7f || c == '#' || c == '@' {
			return false
		}
	}
	r.host = r.target[7:]
	if i := bytes.IndexAny(r.host, "/?"); i >= 0 {
		r.host = r.host[:i]
	}
	if len(r.host) == 0 {
		return false
	}
	hosts, lengths := 0, 0
	for i := 1; i < len(h.lines); i++ {
		name, value, ok := h.field(i)
		if !ok {
			return false
		}
		switch {
		case eqFold(name, "Host"):
			hosts++
		case eqFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (lengths > 0 && n != r.length) {
				return false
			}
			r.length, lengths = n, lengths+1
		case eqFold(name, "Transfer-Encoding"):
			if r.chunked || !eqFold(value, "chunked") {
				return false
			}
			r.chunked = true
		case eqFold(name, "Expect"), eqFold(name, "Upgrade"):
			return false
		case eqFold(name, "Connection"):
			r.conn = append(r.conn, value)
			if hasToken(value, "close") {
				r.close = true
			}
		case eqFold(name, "User-Agent"):
			if !r.hasUA {
				r.userAgent, r.hasUA = value, true
			}
		case eqFold(name, "Referer"):
			if r.referer == nil {
				r.referer = value
			}
		}
	}
	return hosts == 1
}

// hasBody: the request carries a body (which makes it not replayable).
func (r *fastReq) hasBody() bool { return r.length > 0 || r.chunked }

// serve forwards the parsed request and relays the answer; false means
// the client connection must close.
func (fc *fastConn) serve() bool {
	p := fc.p
	p.handlers.Add(1)
	defer p.handlers.Done()
	if fc.r.hasBody() {
		// A body may take longer than the head's deadline to arrive.
		fc.deadline = time.Time{}
		fc.c.SetReadDeadline(fc.deadline)
	}
	p.inflight.Add(1)
	status, n, keep := fc.forward()
	p.inflight.Add(-1)
	p.logFast(&fc.r, status, n)
	if !keep && !fc.bodyDone {
		fc.lingerClose()
	}
	return keep && !fc.r.close
}

// lingerClose ends a connection whose request body was not read whole (an
// early answer, a 502): it half-closes after the answer and drains what the
// client still sends for a moment, so that closing with unread bytes does
// not reset the connection before the client has read the answer
// (net/http's closeWriteAndWait does the same).
func (fc *fastConn) lingerClose() {
	if cw, ok := fc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	fc.deadline = time.Now().Add(lingerTimeout)
	fc.c.SetReadDeadline(fc.deadline)
	io.Copy(io.Discard, fc.br)
}

// handoffConn is a client connection given to net/http with the bytes the
// fast path already read from it.
type handoffConn struct {
	net.Conn
	prefix []byte
	br     *bufio.Reader
}

func (c *handoffConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(b)
		}
		c.br = nil
	}
	return c.Conn.Read(b)
}

// drained: nothing the fast path read is still waiting to be read.
func (c *handoffConn) drained() bool {
	return len(c.prefix) == 0 && (c.br == nil || c.br.Buffered() == 0)
}

// handoffListener is what http.Server serves: the connections the fast
// path hands over.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (p *Proxy) handoff(c net.Conn) {
	select {
	case p.slow.ch <- c:
	case <-p.slow.done:
		c.Close()
	}
}

// trackConn notes a fast-path connection for Stop; false once stopping.
func (p *Proxy) trackConn(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return false
	}
	p.fastConns[c] = struct{}{}
	return true
}

func (p *Proxy) untrackConn(c net.Conn) {
	p.mu.Lock()
	delete(p.fastConns, c)
	p.mu.Unlock()
}

func (p *Proxy) closing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// closeFastConns closes every fast-path client connection (Stop).
func (p *Proxy) closeFastConns() {
	p.mu.Lock()
	p.stopping = true
	conns := make([]net.Conn, 0, len(p.fastConns))
	for c := range p.fastConns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
