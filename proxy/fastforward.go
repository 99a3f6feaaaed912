package proxy

// The fast path's upstream side: a pool of keep-alive connections to the
// upstream proxy, writing one request in proxy form and relaying its answer
// to the client with HTTP/1.1 framing (Content-Length, chunked as received,
// or re-chunked when the upstream ends the body by closing).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	upstreamBufSize     = 32 << 10
	maxIdleUpstream     = 256
	upstreamIdleTimeout = 60 * time.Second // the transport's IdleConnTimeout; squid keeps idle ones 120 s
	max1xxResponses     = 5
	// earlyAnswerWait bounds the wait for an answer from an upstream
	// that stopped reading a request body.
	earlyAnswerWait = 5 * time.Second
)

var (
	upstreamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, upstreamBufSize) }}
	upstreamWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientBufSize) }}
)

// upConn is one connection to the upstream proxy; its buffers come from
// the pools while it is in use.
type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	reused    bool
}

// upPool holds idle upstream connections, most recently used last.
type upPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

func (up *upConn) attach() {
	up.br = upstreamReaders.Get().(*bufio.Reader)
	up.br.Reset(up.c)
	up.bw = upstreamWriters.Get().(*bufio.Writer)
	up.bw.Reset(up.c)
}

func (up *upConn) detach() {
	up.br.Reset(nil)
	upstreamReaders.Put(up.br)
	up.bw.Reset(nil)
	upstreamWriters.Put(up.bw)
	up.br, up.bw = nil, nil
}

func (up *upConn) close() {
	up.c.Close()
	up.detach()
}

// getUpstream returns an idle connection or (fresh) dials a new one.
func (p *Proxy) getUpstream(fresh bool) (*upConn, error) {
	if !fresh {
		pool := &p.pool
		now := time.Now()
		pool.mu.Lock()
		for len(pool.idle) > 0 {
			uc := pool.idle[len(pool.idle)-1]
			pool.idle = pool.idle[:len(pool.idle)-1]
			if now.Sub(uc.idleSince) < upstreamIdleTimeout {
				pool.mu.Unlock()
				uc.reused = true
				uc.attach()
				return uc, nil
			}
			uc.c.Close()
		}
		pool.mu.Unlock()
	}
	d := net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(p.ctx, "tcp", p.up.hostPort)
	if err != nil {
		return nil, &upstreamUnreachable{p.up.hostPort, err}
	}
	uc := &upConn{c: c}
	uc.attach()
	return uc, nil
}

// putUpstream keeps a connection whose exchange ended cleanly.
func (p *Proxy) putUpstream(uc *upConn) {
	if uc.br.Buffered() > 0 {
		uc.close() // bytes past the answer: the framing is off
		return
	}
	uc.detach()
	uc.idleSince = time.Now()
	pool := &p.pool
	pool.mu.Lock()
	if pool.closed || len(pool.idle) >= maxIdleUpstream {
		pool.mu.Unlock()
		uc.c.Close()
		return
	}
	pool.idle = append(pool.idle, uc)
	pool.mu.Unlock()
}

// closeIdleUpstream closes the idle connections; after Stop (final) no
// connection is kept any more.
func (p *Proxy) closeIdleUpstream(final bool) {
	pool := &p.pool
	pool.mu.Lock()
	idle := pool.idle
	pool.idle = nil
	if final {
		pool.closed = true
	}
	pool.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// errNoResponse: the upstream closed a reused connection before answering
// (it timed the idle connection out): a replayable request is retried.
var errNoResponse = errors.New("upstream closed the connection before answering")

// forward sends fc.r upstream and relays the answer. It returns the status
// and body bytes for the access line and whether the client connection
// can serve another request.
func (fc *fastConn) forward() (status int, n int64, keep bool) {
	p, r := fc.p, &fc.r
	fc.bodyDone = !r.hasBody()
	for attempt := 0; ; attempt++ {
		// A request with a body cannot be replayed: it never rides an idle
		// connection, which squid may be closing just then (it does so
		// after some long answers, with no Connection: close).
		uc, err := p.getUpstream(attempt > 0 || r.hasBody())
		if err != nil {
			return fc.badGateway(err, fc.bodyDone)
		}
		status, n, keep, err = fc.exchange(uc)
		if err == nil {
			return status, n, keep
		}
		if errors.Is(err, errNoResponse) && uc.reused && attempt == 0 && !r.hasBody() && replayable(r) {
			continue
		}
		if status != 0 {
			// The answer had begun: the client connection cannot go on.
			return status, n, false
		}
		return fc.badGateway(err, fc.bodyDone)
	}
}

// replayable is net/http's rule for retrying a request on a new connection.
func replayable(r *fastReq) bool {
	switch string(r.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

var errClientBody = errors.New("the client's request body ended early")

// exchange does one request on uc. A non-nil error with status 0 means
// nothing was sent to the client yet. uc is closed or back in the pool.
func (fc *fastConn) exchange(uc *upConn) (status int, n int64, keep bool, err error) {
	r, ubw, ubr := &fc.r, uc.bw, uc.br
	reusable := false
	defer func() {
		if reusable {
			fc.p.putUpstream(uc)
		} else {
			uc.close()
		}
	}()
	// The request in proxy form.
	ubw.Write(r.method)
	ubw.WriteByte(' ')
	ubw.Write(r.target)
	ubw.WriteString(" HTTP/1.1\r\nHost: ")
	ubw.Write(r.host)
	ubw.WriteString("\r\n")
	h := &fc.req
	for i := 1; i < len(h.lines); i++ {
		name, _, _ := h.field(i)
		if eqFold(name, "Host") || isHopByHop(name) || listedIn(name, r.conn) {
			continue
		}
		ubw.Write(h.line(i))
		ubw.WriteString("\r\n")
	}
	if a := fc.p.up.auth; a != "" {
		ubw.WriteString("Proxy-Authorization: ")
		ubw.WriteString(a)
		ubw.WriteString("\r\n")
	}
	if !r.hasUA {
		ubw.WriteString("User-Agent: Go-http-client/1.1\r\n") // what net/http's transport sent
	}
	if r.chunked {
		ubw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	ubw.WriteString("\r\n")
	// early: the upstream stopped taking the body. It may have answered
	// first (a refusal such as 407 or 413, then a close, RFC 9112 9.6):
	// that answer is relayed, not a 502, and the client connection ends
	// since the rest of its body was not read.
	var early error
	if r.hasBody() {
		var rerr, werr error
		if r.chunked {
			_, rerr, werr = copyChunked(ubw, fc.br)
		} else {
			_, rerr, werr = copyN(ubw, fc.br, r.length)
		}
		if rerr != nil {
			return 0, 0, false, fmt.Errorf("%w: %v", errClientBody, rerr)
		} else if werr != nil {
			early = werr
			uc.c.SetReadDeadline(time.Now().Add(earlyAnswerWait))
		} else {
			fc.bodyDone = true
		}
	}
	if early == nil {
		if err := ubw.Flush(); err != nil {
			if uc.reused && !r.hasBody() {
				return 0, 0, false, errNoResponse
			}
			return 0, 0, false, &upstreamUnreachable{fc.p.up.hostPort, err}
		}
	}

	// The answer, past any 1xx.
	rh := &fc.resp
	var code int
	for i := 0; ; i++ {
		if err := rh.read(ubr); err != nil {
			if early != nil {
				return 0, 0, false, &upstreamUnreachable{fc.p.up.hostPort, early}
			}
			if uc.reused && len(rh.buf) == 0 && (err == io.EOF || errors.Is(err, net.ErrClosed) || isReset(err)) {
				return 0, 0, false, errNoResponse
			}
			return 0, 0, false, fmt.Errorf("reading the upstream's answer: %w", err)
		}
		var ok bool
		if code, ok = parseStatusLine(rh.line(0)); !ok {
			return 0, 0, false, fmt.Errorf("malformed HTTP response %q", truncate(string(rh.line(0)), 64))
		}
		if code >= 200 || code == http.StatusSwitchingProtocols {
			break
		}
		if i == max1xxResponses {
			return 0, 0, false, errors.New("too many 1xx informational responses")
		}
	}
	if code == http.StatusSwitchingProtocols {
		return 0, 0, false, errors.New("unexpected 101 Switching Protocols")
	}

	// Its framing.
	var length int64 = -1
	lengths, chunked, upClose := 0, false, string(rh.line(0)[:8]) == "HTTP/1.0"
	var conn [][]byte
	for i := 1; i < len(rh.lines); i++ {
		name, value, ok := rh.field(i)
		if !ok {
			return 0, 0, false, fmt.Errorf("malformed header line in the upstream's answer")
		}
		switch {
		case eqFold(name, "Content-Length"):
			v, ok := parseLength(value)
			if !ok || (lengths > 0 && v != length) {
				return 0, 0, false, errors.New("bad Content-Length in the upstream's answer")
			}
			length, lengths = v, lengths+1
		case eqFold(name, "Transfer-Encoding"):
			if chunked || !eqFold(value, "chunked") {
				return 0, 0, false, fmt.Errorf("unsupported transfer encoding %q", truncate(string(value), 64))
			}
			chunked = true
		case eqFold(name, "Connection"):
			conn = append(conn, value)
			if hasToken(value, "close") {
				upClose = true
			}
		}
	}
	noBody := string(r.method) == "HEAD" || code == http.StatusNoContent || code == http.StatusNotModified
	if chunked {
		length = -1
	}
	toEOF := !noBody && !chunked && length < 0

	// The head to the client.
	cbw := fc.bw
	cbw.WriteString("HTTP/1.1")
	cbw.Write(rh.line(0)[8:])
	cbw.WriteString("\r\n")
	for i := 1; i < len(rh.lines); i++ {
		name, _, _ := rh.field(i)
		if isHopByHop(name) && !(chunked && !noBody && eqFold(name, "Trailer")) || listedIn(name, conn) {
			continue
		}
		cbw.Write(rh.line(i))
		cbw.WriteString("\r\n")
	}
	if (chunked || toEOF) && !noBody {
		cbw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if r.close || early != nil {
		cbw.WriteString("Connection: close\r\n")
	}
	cbw.WriteString("\r\n")
	if early != nil {
		uc.c.SetReadDeadline(time.Time{})
	}

	// The body.
	var rerr, werr error
	switch {
	case noBody:
	case chunked:
		n, rerr, werr = copyChunked(cbw, ubr)
	case toEOF:
		n, rerr, werr = rechunk(cbw, ubr)
		upClose = true
	default:
		n, rerr, werr = copyN(cbw, ubr, length)
	}
	if rerr == nil && werr == nil {
		werr = cbw.Flush()
	}
	if rerr != nil {
		fc.p.logger.Debug("builder proxy: the upstream's answer broke off", "err", fc.p.clean(rerr.Error()))
		return code, n, false, rerr
	}
	if werr != nil {
		return code, n, false, werr
	}
	if early != nil {
		return code, n, false, nil
	}
	reusable = !upClose
	return code, n, true, nil
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// parseStatusLine: "HTTP/1.x NNN reason".
func parseStatusLine(l []byte) (int, bool) {
	if len(l) < 12 || (string(l[:8]) != "HTTP/1.1" && string(l[:8]) != "HTTP/1.0") || l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, false
	}
	code := 0
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, code >= 100
}

// fill makes src have buffered bytes, first sending what dst holds when
// src has nothing at hand: data flows as it comes (streams, events).
func fill(dst *bufio.Writer, src *bufio.Reader) (rerr, werr error) {
	if src.Buffered() > 0 {
		return nil, nil
	}
	if dst.Buffered() > 0 {
		if err := dst.Flush(); err != nil {
			return nil, err
		}
	}
	_, err := src.Peek(1)
	return err, nil
}

// copyN copies n bytes from src to dst through their buffers.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) (done int64, rerr, werr error) {
	for done < n {
		if rerr, werr = fill(dst, src); rerr != nil || werr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return done, rerr, werr
		}
		b, _ := src.Peek(int(min(int64(src.Buffered()), n-done)))
		m, err := dst.Write(b)
		src.Discard(m)
		done += int64(m)
		if err != nil {
			return done, nil, err
		}
	}
	return done, nil, nil
}

// readLine reads one line (chunk size, trailer) without its line end.
func readLine(dst *bufio.Writer, src *bufio.Reader) ([]byte, error, error) {
	if rerr, werr := fill(dst, src); rerr != nil || werr != nil {
		return nil, rerr, werr
	}
	l, err := src.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err, nil
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, nil, nil
}

var errBadChunk = errors.New("malformed chunked encoding")

// copyChunked relays a chunked body as it was framed, trailers included;
// n counts the data bytes.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) (n int64, rerr, werr error) {
	for {
		l, rerr, werr := readLine(dst, src)
		if rerr != nil || werr != nil {
			return n, rerr, werr
		}
		size, ok := parseChunkSize(l)
		if !ok {
			return n, errBadChunk, nil
		}
		dst.Write(l)
		dst.WriteString("\r\n")
		if size == 0 {
			break
		}
		m, rerr, werr := copyN(dst, src, size)
		n += m
		if rerr != nil || werr != nil {
			return n, rerr, werr
		}
		if l, rerr, werr = readLine(dst, src); rerr != nil || werr != nil {
			return n, rerr, werr
		}
		if len(l) != 0 {
			return n, errBadChunk, nil
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return n, nil, err
		}
	}
	// Trailer fields, then the empty line.
	for lines := 0; ; lines++ {
		l, rerr, werr := readLine(dst, src)
		if rerr != nil || werr != nil {
			return n, rerr, werr
		}
		if lines > 1000 {
			return n, errBadChunk, nil
		}
		dst.Write(l)
		if _, err := dst.WriteString("\r\n"); err != nil {
			return n, nil, err
		}
		if len(l) == 0 {
			return n, nil, nil
		}
	}
}

// rechunk sends a body that ends when the upstream closes as chunks.
func rechunk(dst *bufio.Writer, src *bufio.Reader) (n int64, rerr, werr error) {
	var size [20]byte
	for {
		rerr, werr := fill(dst, src)
		if werr != nil {
			return n, nil, werr
		}
		if rerr == io.EOF {
			_, werr = dst.WriteString("0\r\n\r\n")
			return n, nil, werr
		}
		if rerr != nil {
			return n, rerr, nil
		}
		b, _ := src.Peek(src.Buffered())
		dst.Write(strconv.AppendInt(size[:0], int64(len(b)), 16))
		dst.WriteString("\r\n")
		dst.Write(b)
		src.Discard(len(b))
		n += int64(len(b))
		if _, err := dst.WriteString("\r\n"); err != nil {
			return n, nil, err
		}
	}
}

// badGateway answers 502 (the goproxy path's page) before anything else
// was sent; keep is whether the client connection can go on (its request
// body was read whole).
func (fc *fastConn) badGateway(err error, bodyRead bool) (int, int64, bool) {
	msg := fc.p.badGatewayMsg(string(fc.r.method), string(fc.r.target), err)
	keep := bodyRead && !fc.r.close
	cbw := fc.bw
	cbw.WriteString("HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	cbw.WriteString(strconv.Itoa(len(msg)))
	if !keep {
		cbw.WriteString("\r\nConnection: close")
	}
	cbw.WriteString("\r\n\r\n")
	cbw.WriteString(msg)
	if cbw.Flush() != nil {
		keep = false
	}
	return http.StatusBadGateway, int64(len(msg)), keep
}
