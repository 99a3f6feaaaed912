package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// upstream is the job's authenticated proxy, parsed from proxy_url.
type upstream struct {
	url      *url.URL // scheme http, host:port, userinfo (decoded by url.URL)
	hostPort string   // what is dialled and what error messages name
	user     string   // percent-decoded
	pass     string   // percent-decoded
	hasPass  bool
	rawUser  string // userinfo as written in proxy_url (maybe percent-encoded)
	// auth is the Proxy-Authorization value ("" without credentials).
	auth string
	// halfCloseIdle is defaultHalfCloseIdle (tests shorten it).
	halfCloseIdle atomic.Int64
}

// parseUpstream parses proxy_url (http://user:pass@host:port). Its errors
// never repeat the URL: it carries the job's secret.
func parseUpstream(s string) (*upstream, error) {
	if s == "" {
		return nil, errors.New("no upstream proxy URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid upstream proxy URL: %s", redactErr(err, s))
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("invalid upstream proxy URL: scheme %q is not http", truncate(u.Scheme, 16))
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("invalid upstream proxy URL: no host")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, errors.New("invalid upstream proxy URL: no host")
	}
	if port == "" {
		// The reference requires an explicit port too: guessing 80 or
		// 3128 would send the credentials to whatever listens there.
		return nil, fmt.Errorf("invalid upstream proxy URL: no port for host %q", truncate(host, 64))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("invalid upstream proxy URL: bad port %q", truncate(port, 16))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("invalid upstream proxy URL: it must not have a path, query or fragment")
	}
	up := &upstream{
		url:      &url.URL{Scheme: "http", Host: u.Host, User: u.User},
		hostPort: net.JoinHostPort(host, port),
	}
	up.halfCloseIdle.Store(int64(defaultHalfCloseIdle))
	if u.User != nil {
		up.user = u.User.Username()
		up.pass, up.hasPass = u.User.Password()
		up.rawUser = u.User.String()
		if up.user != "" || up.hasPass {
			up.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(up.user+":"+up.pass))
		}
	}
	return up, nil
}

// secrets lists what must never appear in a log: the password as given and
// decoded, user:pass in both forms and their base64. Longest first, so that
// a replacer masks the longest match.
func (up *upstream) secrets() []string {
	if up == nil || up.url.User == nil {
		return nil
	}
	set := map[string]bool{}
	add := func(s string) {
		if s != "" {
			set[s] = true
		}
	}
	if up.hasPass {
		add(up.pass)
		add(url.PathEscape(up.pass))
		add(url.QueryEscape(up.pass))
		if i := strings.IndexByte(up.rawUser, ':'); i >= 0 {
			add(up.rawUser[i+1:])
		}
	} else {
		// Without a password the user name is the token.
		add(up.user)
	}
	for _, pair := range []string{up.user + ":" + up.pass, up.rawUser} {
		if pair == ":" {
			continue
		}
		add(pair)
		add(base64.StdEncoding.EncodeToString([]byte(pair)))
		add(base64.RawStdEncoding.EncodeToString([]byte(pair)))
		add(base64.URLEncoding.EncodeToString([]byte(pair)))
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i] < out[j]
	})
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// redactErr formats err with the whole input (and its userinfo) removed.
func redactErr(err error, input string) string {
	msg := err.Error()
	if input != "" {
		msg = strings.ReplaceAll(msg, input, "<url>")
	}
	if at := strings.LastIndexByte(input, '@'); at >= 0 {
		ui := input[:at]
		if i := strings.Index(ui, "://"); i >= 0 {
			ui = ui[i+3:]
		}
		for _, part := range append([]string{ui}, strings.Split(ui, ":")...) {
			if len(part) > 0 {
				msg = strings.ReplaceAll(msg, part, "<redacted>")
			}
		}
	}
	return msg
}

// upstreamRefusal is the upstream proxy's non-2xx answer to CONNECT (407 for
// a bad token, 403, 503 ...): relayed to the client as it was.
type upstreamRefusal struct {
	status string
	code   int
	header http.Header
	body   []byte
}

func (r *upstreamRefusal) Error() string {
	return "upstream proxy refused CONNECT: " + r.status
}

// upstreamUnreachable means no answer from the upstream proxy at all.
type upstreamUnreachable struct {
	hostPort string
	err      error
}

func (u *upstreamUnreachable) Error() string {
	return fmt.Sprintf("cannot reach upstream proxy %s: %v", u.hostPort, u.err)
}

func (u *upstreamUnreachable) Unwrap() error { return u.err }

const (
	upstreamDialTimeout      = 30 * time.Second
	upstreamHandshakeTimeout = 60 * time.Second
	maxRefusalBody           = 64 << 10
)

// dialConnect opens a tunnel to addr through the upstream proxy.
//
// It is written here rather than taken from goproxy's
// NewConnectDialToProxyWithHandler because that one (v1.9.3) turns every
// non-200 answer into a plain error, so a 407 could not reach the client;
// dials without a context or timeout; and drops bytes the upstream sent
// right after its 200 (it reads through a bufio.Reader it then discards),
// which loses the banner of server-speaks-first protocols (ssh).
func (up *upstream) dialConnect(ctx context.Context, addr string, clientHeader http.Header) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, upstreamDialTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", up.hostPort)
	if err != nil {
		return nil, &upstreamUnreachable{up.hostPort, err}
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, &upstreamUnreachable{up.hostPort, errors.New("not a TCP connection")}
	}
	stop := context.AfterFunc(ctx, func() { tcp.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tcp.SetDeadline(time.Now().Add(upstreamHandshakeTimeout))
	req := &http.Request{
		Method:     http.MethodConnect,
		URL:        &url.URL{Opaque: addr},
		Host:       addr,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header),
	}
	if ua := clientHeader.Get("User-Agent"); ua != "" {
		req.Header.Set("User-Agent", ua)
	} else {
		req.Header["User-Agent"] = nil // no Go default
	}
	if up.auth != "" {
		req.Header.Set("Proxy-Authorization", up.auth)
	}
	bw := bufio.NewWriterSize(tcp, 1024)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tcp.Close()
		return nil, &upstreamUnreachable{up.hostPort, err}
	}
	br := bufio.NewReader(tcp)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		tcp.Close()
		return nil, &upstreamUnreachable{up.hostPort, fmt.Errorf("no answer to CONNECT: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
		resp.Body.Close()
		tcp.Close()
		return nil, &upstreamRefusal{status: resp.Status, code: resp.StatusCode, header: resp.Header, body: body}
	}
	tcp.SetDeadline(time.Time{})
	return &upstreamConn{Conn: tcp, tcp: tcp, br: br, idle: &up.halfCloseIdle}, nil
}

// defaultHalfCloseIdle is how long a tunnel whose client half-closed stays
// open while nothing comes back from the server (see CloseWrite). It must
// exceed git upload-pack's keep-alive interval (uploadpack.keepAlive, 5 s),
// which it sends while it prepares a pack.
const defaultHalfCloseIdle = 10 * time.Second

// spliceChunk is how much the server→client direction moves per splice
// call before it notes progress.
const spliceChunk = 256 << 10

// upstreamConn is the tunnel to the upstream proxy. Bytes read after the
// CONNECT answer may already sit in br; they are delivered first.
// It embeds net.Conn (not *net.TCPConn) so that TCPConn's ReadFrom/WriteTo
// are not promoted past the buffered bytes; its own ReadFrom/WriteTo keep
// the kernel's splice path for the tunnel.
type upstreamConn struct {
	net.Conn
	tcp        *net.TCPConn
	br         *bufio.Reader
	halfClosed atomic.Bool
	idle       *atomic.Int64
}

// progress pushes the idle deadline back once the client half-closed.
func (c *upstreamConn) progress() {
	if c.halfClosed.Load() {
		c.tcp.SetReadDeadline(time.Now().Add(time.Duration(c.idle.Load())))
	}
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	n, err := c.tcp.Read(p)
	if n > 0 {
		c.progress()
	}
	return n, err
}

// WriteTo drains the buffered bytes, then moves the rest with splice in
// chunks (an io.LimitedReader over the TCPConn keeps splice), noting
// progress between chunks.
func (c *upstreamConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if c.br != nil {
		if b := c.br.Buffered(); b > 0 {
			buf, _ := c.br.Peek(b)
			m, err := w.Write(buf)
			n += int64(m)
			c.br.Discard(m)
			if err != nil {
				return n, err
			}
		}
		c.br = nil
	}
	for {
		m, err := io.Copy(w, &io.LimitedReader{R: c.tcp, N: spliceChunk})
		n += m
		if err != nil || m == 0 {
			return n, err
		}
		c.progress()
	}
}

func (c *upstreamConn) ReadFrom(r io.Reader) (int64, error) { return c.tcp.ReadFrom(r) }
func (c *upstreamConn) CloseRead() error                    { return c.tcp.CloseRead() }

// CloseWrite does not pass the client's half-close on at once: squid, the
// usual upstream, tears the whole tunnel down when its client half-closes,
// and the server's answer still on its way is lost. git does exactly that
// through GIT_PROXY_COMMAND: socat shuts its write side down after git's
// request, then waits for the pack; and git's upload-pack (protocol v2)
// only exits at the end of its input. So the end of the client's input is
// passed on (by closing the tunnel) once the server has been quiet for
// halfCloseIdle, or the tunnel ends earlier when the server closes.
func (c *upstreamConn) CloseWrite() error {
	c.halfClosed.Store(true)
	c.progress()
	return nil
}
