package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestArchiveHosts(t *testing.T) {
	got := ArchiveHosts([]string{
		"deb http://archive.ubuntu.com/ubuntu noble main",
		"deb [arch=amd64 signed-by=/k.gpg] https://u:p@Private-PPA.launchpadcontent.net/o/p/ubuntu noble main",
		"deb [ trusted=yes ] http://10.0.0.5:3142/ubuntu noble main",
		"deb-src http://archive.ubuntu.com/ubuntu noble main",
		"deb ftp://old.example/debian bookworm main",
		"# deb http://commented.example/ x y",
		"garbage",
	})
	want := "archive.ubuntu.com:80 private-ppa.launchpadcontent.net:443 10.0.0.5:3142"
	if strings.Join(got, " ") != want {
		t.Errorf("ArchiveHosts = %q, want %q", got, want)
	}
}

func FuzzArchiveHosts(f *testing.F) {
	f.Add("deb [arch=amd64] http://h:1/x noble main")
	f.Add("deb [ a b")
	f.Fuzz(func(t *testing.T, line string) {
		for _, hp := range ArchiveHosts([]string{line}) {
			if _, _, err := net.SplitHostPort(hp); err != nil {
				t.Fatalf("ArchiveHosts(%q) gave %q: %v", line, hp, err)
			}
		}
	})
}

// The gate forwards to the archives' hosts only, plain HTTP and CONNECT,
// and says so in the build log when it refuses.
func TestArchiveGate(t *testing.T) {
	archive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "archive %s", r.URL.Path)
	}))
	defer archive.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the gate forwarded %s %s to a host not among the archives", r.Method, r.URL)
	}))
	defer other.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	g, err := StartArchiveGate(ln, ArchiveGateConfig{Archives: []string{"deb " + archive.URL + "/ubuntu noble main"}, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	gateURL, _ := url.Parse(g.URL())
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(gateURL)}}
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(archive.URL + "/ubuntu/dists/noble/InRelease"); code != 200 || body != "archive /ubuntu/dists/noble/InRelease" {
		t.Errorf("archive through the gate: %d %q", code, body)
	}
	if code, _ := get(other.URL + "/rpc?token=abc"); code != http.StatusForbidden {
		t.Errorf("another host through the gate: %d, want 403", code)
	}
	if !strings.Contains(log.String(), "archive gate: refused GET "+other.URL+"/rpc?token=xxxxx") {
		t.Errorf("build log: %q", log.String())
	}
	connect := func(target string) string {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br := bufio.NewReader(c)
		status, _ := br.ReadString('\n')
		if strings.Contains(status, " 200 ") {
			// Through the tunnel, a plain request to the archive.
			for line, _ := br.ReadString('\n'); line != "\r\n" && line != ""; line, _ = br.ReadString('\n') {
			}
			fmt.Fprintf(c, "GET /t HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
			b, _ := io.ReadAll(br)
			return status + string(b)
		}
		return status
	}
	if out := connect(strings.TrimPrefix(archive.URL, "http://")); !strings.Contains(out, "archive /t") {
		t.Errorf("CONNECT to the archive: %q", out)
	}
	if out := connect(strings.TrimPrefix(other.URL, "http://")); !strings.Contains(out, " 403 ") {
		t.Errorf("CONNECT elsewhere: %q", out)
	}
}
