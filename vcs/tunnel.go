package vcs

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// go-git's git:// transport dials directly and knows nothing of proxies.
// Through the build's HTTP proxy, a git:// URL is fetched via a tunnel: a
// listener on 127.0.0.1 that relays each connection through an HTTP
// CONNECT to the real host (as launchpad-buildd's git proxy does with
// socat), and go-git is pointed at the listener. The git protocol's
// "host=" then names the listener, which only servers doing virtual
// hosting on it (git daemon --interpolated-path) would notice.

type tunnel struct {
	ln     net.Listener
	target string // host:port behind the proxy
	proxy  *url.URL
	auth   string // Proxy-Authorization value, "" for none
	wg     sync.WaitGroup
	ctx    context.Context

	mu     sync.Mutex
	status int // last non-200 answer of the proxy to CONNECT
}

// endpoint is the URL go-git should dial for repoURL: a tunnel for git://
// through a proxy, else repoURL itself.
func (r *run) endpoint(ctx context.Context, repoURL string) (string, error) {
	u, err := url.Parse(repoURL)
	if err != nil || u.Scheme != "git" || r.proxy.URL == "" {
		return repoURL, nil
	}
	port := u.Port()
	if port == "" {
		port = "9418"
	}
	target := net.JoinHostPort(u.Hostname(), port)
	r.tunnelsMu.Lock()
	defer r.tunnelsMu.Unlock()
	t := r.tunnels[target]
	if t == nil {
		if t, err = r.newTunnel(ctx, target); err != nil {
			return "", err
		}
		if r.tunnels == nil {
			r.tunnels = map[string]*tunnel{}
		}
		r.tunnels[target] = t
	}
	local := *u
	local.User = nil
	local.Host = t.ln.Addr().String()
	return local.String(), nil
}

func (r *run) newTunnel(ctx context.Context, target string) (*tunnel, error) {
	pu, err := url.Parse(r.proxy.URL)
	if err != nil {
		return nil, fmt.Errorf("invalid proxy URL: %w", ErrUnsupportedURL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the git:// tunnel: %w", err)
	}
	t := &tunnel{ln: ln, target: target, proxy: pu, ctx: ctx}
	if r.proxy.Username != "" {
		t.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(r.proxy.Username+":"+r.proxy.Password))
	}
	t.wg.Add(1)
	go t.serve()
	return t, nil
}

func (t *tunnel) serve() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer c.Close()
			up, err := t.connect()
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			select {
			case <-done:
				<-done
			case <-t.ctx.Done():
			}
		}()
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

// bufferedConn returns what the proxy sent after its answer before the
// connection itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (t *tunnel) connect() (net.Conn, error) {
	host := t.proxy.Host
	if t.proxy.Port() == "" {
		port := "80"
		if t.proxy.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(t.proxy.Hostname(), port)
	}
	d := &net.Dialer{Timeout: 30 * time.Second}
	var conn net.Conn
	var err error
	if t.proxy.Scheme == "https" {
		td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: t.proxy.Hostname()}}
		conn, err = td.DialContext(t.ctx, "tcp", host)
	} else {
		conn, err = d.DialContext(t.ctx, "tcp", host)
	}
	if err != nil {
		return nil, err
	}
	req := "CONNECT " + t.target + " HTTP/1.1\r\nHost: " + t.target + "\r\n"
	if t.auth != "" {
		req += "Proxy-Authorization: " + t.auth + "\r\n"
	}
	req += "\r\n"
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.mu.Lock()
		t.status = resp.StatusCode
		t.mu.Unlock()
		conn.Close()
		return nil, fmt.Errorf("proxy answered %s", resp.Status)
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{conn, br}, nil
}

// explain turns an opaque go-git failure behind a tunnel into the proxy's
// answer, if it refused.
func (r *run) tunnelError(repoURL string, err error) error {
	if err == nil {
		return nil
	}
	u, perr := url.Parse(repoURL)
	if perr != nil || u.Scheme != "git" || r.proxy.URL == "" {
		return err
	}
	r.tunnelsMu.Lock()
	defer r.tunnelsMu.Unlock()
	for _, t := range r.tunnels {
		t.mu.Lock()
		st := t.status
		t.mu.Unlock()
		switch {
		case st == http.StatusProxyAuthRequired:
			return fmt.Errorf("the proxy refused the credentials (HTTP 407) for git:// via CONNECT: %w", ErrAuthentication)
		case st != 0:
			return fmt.Errorf("the proxy refused CONNECT for git:// (HTTP %d): %w", st, ErrNetwork)
		}
	}
	return err
}

func (r *run) closeTunnels() {
	r.tunnelsMu.Lock()
	defer r.tunnelsMu.Unlock()
	for _, t := range r.tunnels {
		t.ln.Close()
	}
	for _, t := range r.tunnels {
		t.wg.Wait()
	}
	r.tunnels = nil
}
