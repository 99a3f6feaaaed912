// Package proxy is the builder proxy: for the lifetime of one build it runs
// an unauthenticated HTTP proxy on the build bridge (http://10.10.10.1:8222/)
// that forwards plain HTTP requests and CONNECT tunnels to the job's
// authenticated upstream proxy (proxy_url from the build master), adding the
// job's credentials, and revokes the job's token when the build step ends.
// Many build tools cannot use a proxy that needs credentials; this is how
// they reach the outside world (launchpad-buildd's lpbuildd/proxy.py).
//
// It is built on github.com/elazarl/goproxy: goproxy serves the client
// side (request parsing, absolute-URI requests, CONNECT hijacking and
// half-closing relays, WebSocket upgrades, trailers), its Tr transport
// forwards plain HTTP to the upstream (Tr.Proxy adds Proxy-Authorization),
// and its ConnectDialWithReq/ConnectionErrHandler hooks route tunnels
// through the upstream. What this package adds: the upstream CONNECT
// handshake (see dialConnect for why), hop-by-hop header rules, the
// client address filter, the build-log access lines, 502 answers, cut-off
// and revocation.
//
// Unlike the reference it never listens on all interfaces (that lent the
// job's credentials to anyone who could reach the builder) and keeps client
// connections alive.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buildd-agent/buildd-agent/internal/redact"
	"github.com/elazarl/goproxy"
)

// DefaultPort is the builder proxy's port ([builder] proxyport); build
// scripts of Launchpad users may depend on 10.10.10.1:8222.
const DefaultPort = 8222

// Config configures one build's proxy.
type Config struct {
	// Upstream is proxy_url: http://user:pass@host:port (percent-encoded
	// userinfo allowed; the port is required).
	Upstream string
	// RevocationEndpoint is revocation_endpoint; "" means no revocation.
	RevocationEndpoint string
	// ListenAddr is an IP address and optional port ("10.10.10.1:8222",
	// "10.10.10.1" for DefaultPort, "127.0.0.1:0" in tests). All-interface
	// addresses ("", ":port", 0.0.0.0, ::) and host names are refused.
	ListenAddr string
	// Listener, if set, is served instead of listening on ListenAddr
	// (which is then ignored): a socket the target opened inside its own
	// network namespace (target.Listener), reachable from the build only.
	// Stop closes it.
	Listener net.Listener
	// AllowedClients are the client addresses served; connections from
	// elsewhere are closed at once. Empty means loopback plus, for a
	// non-loopback listen address, its /24 (IPv4) or /64 (IPv6): the bridge.
	AllowedClients []netip.Prefix
	// Log is the build log: one access line per request, the revocation
	// messages. Nil discards.
	Log io.Writer
	// Logger is the agent log. Nil discards.
	Logger *slog.Logger
	// FetchService: Upstream is a fetch-service session, whose token is
	// revoked with a JSON body {"token": …} and no authentication.
	FetchService bool
}

// Proxy is one build's running builder proxy. It holds no global state:
// every build's proxy has its own upstream, transport and connections.
type Proxy struct {
	cfg      Config
	up       *upstream
	allowed  []netip.Prefix
	ln       net.Listener
	srv      *http.Server
	gp       *goproxy.ProxyHttpServer
	tr       *http.Transport
	url      string
	secrets  []string
	mask     *strings.Replacer
	logger   *slog.Logger
	ctx      context.Context // cancelled by Stop: aborts upstream dials
	cancel   context.CancelFunc
	cutOff   atomic.Bool
	stopped  atomic.Bool
	handlers sync.WaitGroup

	logMu      sync.Mutex // serialises writes to cfg.Log and guards the fields below
	logBuf     []byte     // access lines not yet written (accesslog.go)
	logTimer   *time.Timer
	logPending bool         // logTimer is armed
	inflight   atomic.Int32 // fast-path requests being forwarded

	mu        sync.Mutex
	tunnels   map[*clientConn]struct{} // hijacked client connections
	fastConns map[net.Conn]struct{}    // connections the fast path serves
	stopping  bool                     // Stop began: no new fast-path connection

	pool       upPool           // the fast path's upstream connections
	slow       *handoffListener // connections handed to srv (goproxy)
	acceptDone chan struct{}

	revokeOnce sync.Once
	stopOnce   sync.Once
	served     chan struct{}
}

// listenAddress validates ListenAddr and returns host:port to listen on.
func listenAddress(s string) (netip.Addr, string, error) {
	if s == "" {
		return netip.Addr{}, "", errors.New("refusing to listen on all interfaces: no listen address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare IP address: the default port.
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), strconv.Itoa(DefaultPort)
	}
	if host == "" {
		return netip.Addr{}, "", fmt.Errorf("refusing to listen on all interfaces (%q): give the bridge address", s)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("listen address %q is not an IP address", s)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, "", fmt.Errorf("listen address %q has a zone", s)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return netip.Addr{}, "", fmt.Errorf("refusing to listen on all interfaces (%q): give the bridge address", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return netip.Addr{}, "", fmt.Errorf("listen address %q has a bad port", s)
	}
	return ip, net.JoinHostPort(ip.String(), strconv.Itoa(n)), nil
}

func defaultAllowed(ip netip.Addr) []netip.Prefix {
	out := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if !ip.IsLoopback() {
		bits := 24
		if ip.Is6() {
			bits = 64
		}
		out = append(out, netip.PrefixFrom(ip, bits).Masked())
	}
	return out
}

// Start validates cfg, listens and serves until Stop. ctx bounds only the
// start itself.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	up, err := parseUpstream(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("cannot start builder proxy: %w", err)
	}
	var ip netip.Addr
	var addr string
	if cfg.Listener != nil {
		ap, err := netip.ParseAddrPort(cfg.Listener.Addr().String())
		if err != nil {
			return nil, fmt.Errorf("cannot start builder proxy: listener address %q: %w", cfg.Listener.Addr(), err)
		}
		ip, addr = ap.Addr().Unmap(), ap.String()
	} else {
		ip, addr, err = listenAddress(cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("cannot start builder proxy: %w", err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	p := &Proxy{
		cfg:        cfg,
		up:         up,
		allowed:    cfg.AllowedClients,
		secrets:    up.secrets(),
		logger:     cfg.Logger,
		tunnels:    map[*clientConn]struct{}{},
		fastConns:  map[net.Conn]struct{}{},
		served:     make(chan struct{}),
		acceptDone: make(chan struct{}),
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if len(p.allowed) == 0 {
		p.allowed = defaultAllowed(ip)
	}
	var pairs []string
	for _, s := range p.secrets {
		pairs = append(pairs, s, "********")
	}
	p.mask = strings.NewReplacer(pairs...)
	if cfg.RevocationEndpoint != "" {
		// A revocation problem never fails a build (as the reference):
		// warn now, and the revocation itself logs its failure.
		if err := checkEndpoint(cfg.RevocationEndpoint); err != nil {
			p.logger.Warn("builder proxy: the token will not be revoked", "err", p.clean(err.Error()))
		}
	}

	ln := cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("cannot start builder proxy on %s: %w", addr, err)
		}
	}
	p.ln = &filterListener{Listener: ln, p: p}
	p.url = "http://" + ln.Addr().String() + "/"
	p.ctx, p.cancel = context.WithCancel(context.Background())

	p.tr = &http.Transport{
		// Plain HTTP goes to the upstream as an absolute-URI request; the
		// transport adds Proxy-Authorization from the URL's (decoded) userinfo.
		Proxy:                 http.ProxyURL(up.url),
		DialContext:           (&net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Bodies pass byte for byte: no transparent gzip.
		DisableCompression: true,
	}
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = p.tr
	gp.KeepAcceptEncoding = true
	gp.Logger = goproxyLogger{p}
	gp.Verbose = false
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = p.connectDial
	gp.ConnectionErrHandler = p.connectError
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "This is the builder proxy: it serves proxy requests (absolute URI or CONNECT) only.", http.StatusBadRequest)
	})
	gp.OnRequest().DoFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		removeHopByHop(r.Header, isWebSocket(r.Header))
		return r, nil
	})
	gp.OnResponse().DoFunc(p.onResponse)
	p.gp = gp

	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 60 * time.Second,
		IdleTimeout:       60 * time.Second, // as the reference
		ErrorLog:          slogErrorLog(p),
	}
	// Connections start on the fast path (fastpath.go), which hands what
	// it does not serve itself to srv.
	p.slow = newHandoffListener(ln.Addr())
	go func() {
		defer close(p.served)
		if err := p.srv.Serve(p.slow); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.logger.Error("builder proxy stopped serving", "addr", addr, "err", p.clean(err.Error()))
		}
	}()
	go p.acceptLoop()
	p.logger.Info("builder proxy started", "url", p.url, "upstream", up.hostPort)
	return p, nil
}

// URL is the proxy's address as given to the build: "http://10.10.10.1:8222/".
func (p *Proxy) URL() string { return p.url }

// Env is what every build command gets in its environment.
func (p *Proxy) Env() []string {
	u := p.url
	return []string{
		"http_proxy=" + u,
		"https_proxy=" + u,
		"HTTP_PROXY=" + u,
		"HTTPS_PROXY=" + u,
		"GIT_PROXY_COMMAND=" + GitProxyPath,
		"SNAPPY_STORE_NO_CDN=1",
		"no_proxy=localhost,127.0.0.1,::1",
		"NO_PROXY=localhost,127.0.0.1,::1",
	}
}

// Secrets lists the strings the build log and agent log must mask: the
// password (decoded and as written), "user:pass" and its base64 forms.
func (p *Proxy) Secrets() []string { return append([]string(nil), p.secrets...) }

// CutOff implements disable_proxy_after_pull: it refuses every further
// request (403), closes open tunnels and revokes the token now. A failed
// revocation is logged, never returned: it must not fail the build.
func (p *Proxy) CutOff(ctx context.Context) error {
	if p.stopped.Load() {
		return errors.New("cannot cut off builder proxy: it is stopped")
	}
	p.cutOff.Store(true)
	p.closeTunnels()
	p.tr.CloseIdleConnections()
	p.closeIdleUpstream(false)
	p.logger.Info("builder proxy cut off", "url", p.url)
	p.revoke(ctx)
	return nil
}

// Stop stops listening, closes client connections and tunnels, waits
// (bounded by ctx) for requests in flight, then revokes the token (once per
// Proxy, whether or not CutOff revoked it already: then not again). A failed
// revocation is logged, never returned.
func (p *Proxy) Stop(ctx context.Context) error {
	var err error
	p.stopOnce.Do(func() {
		p.cutOff.Store(true)
		err = p.srv.Close()
		if lerr := p.ln.Close(); lerr != nil && err == nil && !errors.Is(lerr, net.ErrClosed) {
			err = lerr
		}
		p.cancel()
		p.closeFastConns()
		p.closeTunnels()
		p.tr.CloseIdleConnections()
		p.closeIdleUpstream(true)
		done := make(chan struct{})
		go func() { p.handlers.Wait(); <-p.served; <-p.acceptDone; close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			p.logger.Warn("builder proxy: requests still running at stop", "err", ctx.Err())
		}
		p.stopped.Store(true)
		p.flushAccess()
		p.logger.Info("builder proxy stopped", "url", p.url)
		p.revoke(ctx)
		if err != nil {
			err = fmt.Errorf("cannot stop builder proxy: %w", err)
		}
	})
	return err
}

func (p *Proxy) revoke(ctx context.Context) {
	p.revokeOnce.Do(func() {
		if p.cfg.RevocationEndpoint == "" {
			return
		}
		// Revocation must happen even when the build's context is over.
		ctx := context.WithoutCancel(ctx)
		err := revoke(ctx, p.up, p.cfg.RevocationEndpoint, p.buildLog(), p.mask, p.cfg.FetchService)
		if err != nil {
			p.logger.Warn(p.clean(err.Error()))
		} else {
			p.logger.Info("revoked proxy token", "user", p.up.user)
		}
	})
}

// buildLog is cfg.Log, serialised with the access lines.
func (p *Proxy) buildLog() io.Writer { return lockedWriter{p} }

type lockedWriter struct{ p *Proxy }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.logMu.Lock()
	defer w.p.logMu.Unlock()
	w.p.flushAccessLocked() // the access lines before it come first
	return w.p.cfg.Log.Write(b)
}

func (p *Proxy) closeTunnels() {
	p.mu.Lock()
	conns := make([]*clientConn, 0, len(p.tunnels))
	for c := range p.tunnels {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// ServeHTTP wraps goproxy: refusal after cut-off, the access record, and
// the end of hijacked (WebSocket) connections.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()
	rec := newRecord(r)
	if p.cutOff.Load() {
		rec.status.Store(int32(http.StatusForbidden))
		body := "The builder proxy is closed: the build's network access ended (disable_proxy_after_pull or end of build).\n"
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusForbidden)
		n, _ := io.WriteString(w, body)
		rec.bytes.Add(int64(n))
		p.logAccess(rec)
		return
	}
	rw := &recordingWriter{ResponseWriter: w, rec: rec, p: p}
	r = r.WithContext(context.WithValue(r.Context(), recordKey{}, rec))
	p.gp.ServeHTTP(rw, r)
	if rw.hijacked != nil {
		// A tunnel is logged when it closes; a finished WebSocket relay
		// leaves its client connection open (goproxy does not close it).
		if r.Method != http.MethodConnect {
			rw.hijacked.Close()
		}
		return
	}
	p.logAccess(rec)
}

// connectDial is goproxy's ConnectDialWithReq hook.
func (p *Proxy) connectDial(r *http.Request, _, addr string) (net.Conn, error) {
	c, err := p.up.dialConnect(p.ctx, addr, r.Header)
	if err == nil {
		if rec := recordOf(r); rec != nil {
			rec.status.Store(int32(http.StatusOK))
		}
	}
	return c, err
}

// connectError is goproxy's ConnectionErrHandler: it answers a CONNECT that
// could not be tunnelled. The upstream's own refusal (407 ...) is relayed.
func (p *Proxy) connectError(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	rec := recordOf(ctx.Req)
	var refusal *upstreamRefusal
	if errors.As(err, &refusal) {
		if rec != nil {
			rec.status.Store(int32(refusal.code))
		}
		p.logger.Warn("builder proxy: upstream refused CONNECT", "target", p.clean(ctx.Req.Host), "upstream", p.up.hostPort, "status", refusal.status)
		h := refusal.header.Clone()
		removeHopByHop(h, false)
		resp := &http.Response{
			Status: refusal.status, StatusCode: refusal.code,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: h, ContentLength: int64(len(refusal.body)),
			Body: io.NopCloser(strings.NewReader(string(refusal.body))), Close: true,
		}
		resp.Write(w)
		return
	}
	if rec != nil {
		rec.status.Store(int32(http.StatusBadGateway))
	}
	msg := p.badGateway(ctx.Req, err)
	fmt.Fprintf(w, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
}

// badGateway logs an upstream failure and returns the client's 502 body: it
// names the upstream host:port, never its credentials.
func (p *Proxy) badGateway(r *http.Request, err error) string {
	// goproxy empties RequestURI before forwarding (a client request must
	// not carry one): the absolute URL is what the client asked for.
	target := r.URL.String()
	if r.Method == http.MethodConnect {
		target = r.Host
	}
	return p.badGatewayMsg(r.Method, target, err)
}

func (p *Proxy) badGatewayMsg(method, target string, err error) string {
	target = p.clean(target)
	var unreach *upstreamUnreachable
	reason := err.Error()
	if errors.As(err, &unreach) {
		reason = unreach.err.Error()
	}
	reason = p.clean(reason)
	p.logger.Warn("builder proxy: upstream proxy failed", "method", method, "target", target, "upstream", p.up.hostPort, "err", reason)
	return fmt.Sprintf("502 Bad Gateway: the builder proxy could not forward %s %s through the upstream proxy %s: %s\n",
		method, target, p.up.hostPort, reason)
}

// onResponse turns a transport failure into a 502 and drops hop-by-hop
// response headers.
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp == nil {
		err := ctx.Error
		if err == nil {
			err = errors.New("no response")
		}
		msg := p.badGateway(ctx.Req, err)
		return goproxy.NewResponse(ctx.Req, "text/plain; charset=utf-8", http.StatusBadGateway, msg)
	}
	removeHopByHop(resp.Header, resp.StatusCode == http.StatusSwitchingProtocols && isWebSocket(resp.Header))
	return resp
}

// hopByHop are the headers meant for one connection only (RFC 9110 7.6.1)
// plus the proxy ones.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authorization",
}

// removeHopByHop drops hop-by-hop headers and those the Connection header
// lists. For a WebSocket handshake Connection and Upgrade stay: they are the
// handshake.
func removeHopByHop(h http.Header, websocket bool) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" || (websocket && strings.EqualFold(name, "Upgrade")) {
				continue
			}
			h.Del(name)
		}
	}
	for _, name := range hopByHop {
		if websocket && (name == "Connection" || name == "Upgrade") {
			continue
		}
		h.Del(name)
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func isWebSocket(h http.Header) bool {
	return headerHasToken(h, "Connection", "Upgrade") && headerHasToken(h, "Upgrade", "websocket")
}

// filterListener closes connections from addresses not allowed.
type filterListener struct {
	net.Listener
	p *Proxy
}

func (l *filterListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err == nil && l.p.clientAllowed(ap.Addr()) {
			return c, nil
		}
		l.p.logger.Warn("builder proxy: refused a connection from a client not allowed", "client", c.RemoteAddr().String())
		c.Close()
	}
}

func (p *Proxy) clientAllowed(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, pr := range p.allowed {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// goproxyLogger sends goproxy's own messages to the agent log (debug level:
// they are mostly client resets), masked.
type goproxyLogger struct{ p *Proxy }

func (l goproxyLogger) Printf(format string, v ...any) {
	l.p.logger.Debug(strings.TrimSpace(l.p.clean(fmt.Sprintf(format, v...))), "component", "goproxy")
}

// clean is what every agent-log string of the proxy goes through: the
// job's secrets masked by value, then URL userinfo and query tokens (of
// the URLs builds ask for) by redact.String.
func (p *Proxy) clean(s string) string { return redact.String(p.mask.Replace(s)) }
