package proxy

// The archive gate: apt's way out of a build whose network is its own.
//
// A chroot build's network namespace reaches nothing of the host's (see
// rootfs/netns_linux.go). apt must still fetch from the build's archives
// (the sources.list lines buildd-manager sends). The gate is a small HTTP
// proxy served on a socket inside the build's namespace, configured into
// apt as Acquire::http::Proxy and Acquire::https::Proxy: it forwards
// plain HTTP requests and CONNECT tunnels to the hosts (host:port) those
// archive lines name, and only to them; anything else gets 403. So a build
// cannot use it to reach the agent, the host's loopback or the rest of the
// network. With [proxy] apt set, plain HTTP goes on through that proxy.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/buildd-agent/buildd-agent/internal/redact"
)

// ArchiveGateConfig configures one build's archive gate.
type ArchiveGateConfig struct {
	// Archives are the build's sources.list lines; their URLs' host:port
	// are what the gate lets through.
	Archives []string
	// Upstream, if set, is the apt proxy ([proxy] apt) plain HTTP goes
	// through.
	Upstream string
	// Log is the build log: one line per refused request. Nil discards.
	Log io.Writer
	// Logger is the agent log. Nil discards.
	Logger *slog.Logger
}

// ArchiveGate is a running archive gate.
type ArchiveGate struct {
	allowed map[string]bool
	tr      *http.Transport
	srv     *http.Server
	url     string
	log     io.Writer
	logMu   sync.Mutex
	logger  *slog.Logger
}

// ArchiveHosts returns the host:port of every archive line's URL ("deb
// [options] URL suite components", "deb-src …"), default ports filled in.
func ArchiveHosts(archives []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, line := range archives {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "deb" && f[0] != "deb-src") {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// The options may hold blanks: skip to the word closing them.
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) == 0 {
			continue
		}
		u, err := url.Parse(f[0])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			continue
		}
		if hp := hostPort(u); !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	return out
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// StartArchiveGate serves the gate on ln until ln is closed (the target
// closes it when it stops) or Stop.
func StartArchiveGate(ln net.Listener, cfg ArchiveGateConfig) (*ArchiveGate, error) {
	g := &ArchiveGate{allowed: map[string]bool{}, log: cfg.Log, logger: cfg.Logger}
	if g.log == nil {
		g.log = io.Discard
	}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	for _, hp := range ArchiveHosts(cfg.Archives) {
		g.allowed[hp] = true
	}
	g.tr = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
	if cfg.Upstream != "" {
		u, err := url.Parse(cfg.Upstream)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cannot start the archive gate: bad apt proxy %q", redact.String(cfg.Upstream))
		}
		g.tr.Proxy = http.ProxyURL(u)
	}
	g.url = "http://" + ln.Addr().String() + "/"
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			g.logger.Debug("archive gate stopped serving", "err", err)
		}
		g.tr.CloseIdleConnections()
	}()
	return g, nil
}

// URL is the gate's address, for apt's configuration.
func (g *ArchiveGate) URL() string { return g.url }

// Stop closes the gate and its connections.
func (g *ArchiveGate) Stop() error {
	err := g.srv.Close()
	g.tr.CloseIdleConnections()
	return err
}

func (g *ArchiveGate) refuse(w http.ResponseWriter, r *http.Request, target string) {
	msg := fmt.Sprintf("archive gate: refused %s %s: only the build's archives are reachable", r.Method, redact.String(target))
	g.logMu.Lock()
	fmt.Fprintln(g.log, msg)
	g.logMu.Unlock()
	http.Error(w, msg, http.StatusForbidden)
}

func (g *ArchiveGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		g.tunnel(w, r)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http") {
		http.Error(w, "This is the archive gate: it serves http:// proxy requests and CONNECT only.", http.StatusBadRequest)
		return
	}
	if !g.allowed[hostPort(r.URL)] {
		g.refuse(w, r, r.URL.String())
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	removeHopByHop(out.Header, false)
	resp, err := g.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, "archive gate: "+redact.String(err.Error()), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	removeHopByHop(resp.Header, false)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (g *ArchiveGate) tunnel(w http.ResponseWriter, r *http.Request) {
	u := &url.URL{Scheme: "https", Host: r.Host}
	if u.Port() == "" || !g.allowed[hostPort(u)] {
		g.refuse(w, r, r.Host)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), upstreamDialTimeout)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.Host)
	cancel()
	if err != nil {
		http.Error(w, "archive gate: "+redact.String(err.Error()), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "archive gate: cannot tunnel", http.StatusInternalServerError)
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() {
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			up.Write(b)
		}
		io.Copy(up, client)
		closeWrite(up)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, up)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
	client.Close()
	up.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
