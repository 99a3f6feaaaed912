package proxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestListenAddress(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{"10.10.10.1:8222", "10.10.10.1:8222", ""},
		{"10.10.10.1", "10.10.10.1:8222", ""},
		{"127.0.0.1:0", "127.0.0.1:0", ""},
		{"[::1]:8222", "[::1]:8222", ""},
		{"::1", "[::1]:8222", ""},
		{"[::ffff:10.10.10.1]:1", "10.10.10.1:1", ""},
		{"", "", "all interfaces"},
		{":8222", "", "all interfaces"},
		{"0.0.0.0:8222", "", "all interfaces"},
		{"0.0.0.0", "", "all interfaces"},
		{"[::]:8222", "", "all interfaces"},
		{"::", "", "all interfaces"},
		{"localhost:8222", "", "not an IP address"},
		{"10.10.10.1:99999", "", "bad port"},
		{"10.10.10.1:http", "", "bad port"},
		{"[fe80::1%eth0]:1", "", "zone"},
	}
	for _, c := range cases {
		_, got, err := listenAddress(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("listenAddress(%q) = %q, %v; want error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("listenAddress(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestStartRefusesAllInterfaces(t *testing.T) {
	for _, addr := range []string{"", ":0", "0.0.0.0:0", "[::]:0"} {
		p, err := Start(context.Background(), Config{Upstream: "http://u:p@127.0.0.1:3128", ListenAddr: addr})
		if err == nil {
			p.Stop(context.Background())
			t.Errorf("Start on %q succeeded", addr)
		}
	}
}

func TestDefaultAllowedClients(t *testing.T) {
	p, err := Start(context.Background(), Config{Upstream: "http://u:p@127.0.0.1:3128", ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	got := defaultAllowed(mustAddr("10.10.10.1"))
	want := []string{"127.0.0.0/8", "::1/128", "10.10.10.0/24"}
	var gotS []string
	for _, g := range got {
		gotS = append(gotS, g.String())
	}
	if diff := cmp.Diff(want, gotS); diff != "" {
		t.Errorf("defaultAllowed(10.10.10.1) (-want +got):\n%s", diff)
	}
	for a, ok := range map[string]bool{"127.0.0.1": true, "::1": true, "10.10.10.9": false, "192.168.1.1": false} {
		if p.clientAllowed(mustAddr(a)) != ok {
			t.Errorf("loopback proxy: client %s allowed = %v", a, !ok)
		}
	}
}

func TestParseUpstream(t *testing.T) {
	cases := []struct {
		in               string
		user, pass, host string
		err              string
	}{
		{in: "http://user:secret@proxy.example:3128", user: "user", pass: "secret", host: "proxy.example:3128"},
		{in: "http://user:s%2Fe%40c%3Aret@10.0.0.1:3128/", user: "user", pass: "s/e@c:ret", host: "10.0.0.1:3128"},
		{in: "http://us%20er:pw@[::1]:8080", user: "us er", pass: "pw", host: "[::1]:8080"},
		{in: "http://token@10.0.0.1:3128", user: "token", host: "10.0.0.1:3128"},
		{in: "http://10.0.0.1:3128", host: "10.0.0.1:3128"},
		{in: "", err: "no upstream"},
		{in: "https://u:p@h:1", err: "scheme"},
		{in: "u:p@h:1", err: "scheme"},
		{in: "http://u:p@h", err: "no port"},
		{in: "http://u:p@h:0", err: "bad port"},
		{in: "http://u:p@:3128", err: "no host"},
		{in: "http://u:p@h:1/path", err: "path"},
		{in: "http://u:p%zz@h:1", err: "invalid"},
	}
	for _, c := range cases {
		up, err := parseUpstream(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseUpstream(%q): %v, want error with %q", c.in, err, c.err)
			}
			if err != nil && strings.Contains(c.in, "@") && strings.Contains(err.Error(), strings.Split(strings.TrimPrefix(c.in, "http://"), "@")[0]) {
				t.Errorf("parseUpstream(%q) error repeats the userinfo: %v", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseUpstream(%q): %v", c.in, err)
			continue
		}
		if up.user != c.user || up.pass != c.pass || up.hostPort != c.host {
			t.Errorf("parseUpstream(%q) = %q %q %q, want %q %q %q", c.in, up.user, up.pass, up.hostPort, c.user, c.pass, c.host)
		}
	}
}

func FuzzParseUpstream(f *testing.F) {
	for _, s := range []string{
		"http://user:secret@proxy.example:3128", "http://u:s%2Fe%40c@10.0.0.1:3128/", "http://[::1]:1",
		"http://a@b@c:1", "http://u:p%zz@h:1", "http://u:pass word@h:1", "http://:@h:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		up, err := parseUpstream(s)
		if err != nil {
			// Errors must never repeat the whole URL or its password.
			if len(s) > 12 && strings.Contains(err.Error(), s) {
				t.Fatalf("error repeats the input: %v", err)
			}
			return
		}
		if up.hostPort == "" || !strings.Contains(s, "@") && up.auth != "" {
			t.Fatalf("parsed %q into %+v", s, up)
		}
		for _, sec := range up.secrets() {
			if sec == "" {
				t.Fatal("empty secret")
			}
		}
		if up.hasPass && up.pass != "" {
			if !strings.Contains(strings.Join(up.secrets(), "\n"), up.pass) {
				t.Fatalf("password %q not among the secrets", up.pass)
			}
		}
	})
}

func FuzzListenAddress(f *testing.F) {
	for _, s := range []string{"10.10.10.1:8222", "10.10.10.1", ":8222", "0.0.0.0:1", "[::]:1", "::", "[::1]:0", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, addr, err := listenAddress(s)
		if err != nil {
			return
		}
		if ip.IsUnspecified() || !ip.IsValid() {
			t.Fatalf("listenAddress(%q) accepted %v", s, ip)
		}
		h, _, err := net.SplitHostPort(addr)
		if err != nil || h == "" || h == "0.0.0.0" || h == "::" {
			t.Fatalf("listenAddress(%q) = %q", s, addr)
		}
	})
}

func TestEnvAndSecrets(t *testing.T) {
	p, err := Start(context.Background(), Config{Upstream: "http://job:p%40ss@127.0.0.1:3128", ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(context.Background())
	u := p.URL()
	if !strings.HasPrefix(u, "http://127.0.0.1:") || !strings.HasSuffix(u, "/") {
		t.Fatalf("URL %q", u)
	}
	want := []string{
		"http_proxy=" + u, "https_proxy=" + u, "HTTP_PROXY=" + u, "HTTPS_PROXY=" + u,
		"GIT_PROXY_COMMAND=/usr/local/bin/lpbuildd-git-proxy", "SNAPPY_STORE_NO_CDN=1",
		"no_proxy=localhost,127.0.0.1,::1", "NO_PROXY=localhost,127.0.0.1,::1",
	}
	if diff := cmp.Diff(want, p.Env()); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	secrets := strings.Join(p.Secrets(), "\n")
	for _, s := range []string{"p@ss", "p%40ss", "job:p@ss", "job:p%40ss", "am9iOnBAc3M="} {
		if !strings.Contains("\n"+secrets+"\n", "\n"+s+"\n") {
			t.Errorf("Secrets() lacks %q: %q", s, p.Secrets())
		}
	}
	if strings.Contains("\n"+secrets+"\n", "\njob\n") {
		t.Error("the user name alone is not a secret when there is a password")
	}
}

func TestFormatAccess(t *testing.T) {
	rec := &record{method: "GET", uri: `http://h/a"b`, proto: "HTTP/1.1", userAgent: "curl/7.88.1"}
	rec.status.Store(200)
	rec.bytes.Store(1234)
	tm := time.Date(2026, 11, 28, 9, 5, 3, 0, time.FixedZone("X", 3600))
	got := formatAccess(tm, rec)
	want := `[28/Nov/2026:08:05:03 +0000] "GET http://h/a\"b HTTP/1.1" 200 1234 "-" "curl/7.88.1"` + "\n"
	if got != want {
		t.Errorf("formatAccess:\n got %q\nwant %q", got, want)
	}
	rec = &record{method: "CONNECT", uri: "h:443", proto: "HTTP/1.1", referer: "r\n"}
	rec.status.Store(502)
	if got := formatAccess(tm, rec); !strings.Contains(got, `" 502 - "r\x0a" "-"`) {
		t.Errorf("formatAccess: %q", got)
	}
}

func TestRevokeFailuresAreLoggedNotFatal(t *testing.T) {
	var status atomic.Int32
	status.Store(500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	var log bytes.Buffer
	err := Revoke(context.Background(), "http://job:tok3n@127.0.0.1:1", srv.URL+"/job", &log)
	if err == nil || !strings.Contains(log.String(), "Revoking proxy token...\nUnable to revoke token for job: ") || !strings.Contains(log.String(), "500") {
		t.Errorf("500: err %v, log %q", err, log.String())
	}
	srv.Close()
	log.Reset()
	err = Revoke(context.Background(), "http://job:tok3n@127.0.0.1:1", srv.URL+"/job", &log)
	if err == nil || !strings.Contains(log.String(), "Unable to revoke token for job: DELETE "+srv.URL+"/job: ") {
		t.Errorf("down: err %v, log %q", err, log.String())
	}
	if strings.Contains(log.String(), "tok3n") {
		t.Errorf("log holds the token: %q", log.String())
	}
}

// The git proxy script turns $http_proxy into socat's PROXY address; a
// fake socat prints its arguments.
func TestGitProxyScript(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "lpbuildd-git-proxy")
	if err := os.WriteFile(script, GitProxyScript, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "socat"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ proxy, want string }{
		{"http://10.10.10.1:8222/", "-t\n86400\nSTDIO\nPROXY:10.10.10.1:git.example:9418,proxyport=8222\n"},
		{"http://10.10.10.1:8222", "-t\n86400\nSTDIO\nPROXY:10.10.10.1:git.example:9418,proxyport=8222\n"},
		{"http://u:p@proxy:3128/", "-t\n86400\nSTDIO\nPROXY:proxy:git.example:9418,proxyport=3128,proxyauth=u:p\n"},
		{"http://proxy/", "-t\n86400\nSTDIO\nPROXY:proxy:git.example:9418,proxyport=80\n"},
	}
	for _, c := range cases {
		cmd := exec.Command("/bin/sh", script, "git.example", "9418")
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "http_proxy=" + c.proxy}
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Errorf("http_proxy=%s: %v %q, want %q", c.proxy, err, out, c.want)
		}
	}
	cmd := exec.Command("/bin/sh", script, "git.example", "9418")
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "http_proxy is not set") {
		t.Errorf("without http_proxy: %v %q", err, out)
	}
}

func TestBadRevocationEndpointIsNotFatal(t *testing.T) {
	var log bytes.Buffer
	p, err := Start(context.Background(), Config{
		Upstream: "http://job:tok3n@127.0.0.1:1", RevocationEndpoint: "ftp://nowhere", ListenAddr: "127.0.0.1:0", Log: &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "Revoking proxy token...\nUnable to revoke token for job: invalid revocation endpoint") {
		t.Errorf("build log: %q", log.String())
	}
}
