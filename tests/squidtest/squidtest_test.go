package squidtest

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestSquidAuthenticates(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	defer origin.Close()
	users := map[string]string{"alice": "p@ss:w/rd%", "bob": "x"}
	s := Start(t, Options{Users: users})

	cases := []struct {
		name  string
		proxy string
		want  int
	}{
		{"good credentials", s.URL("alice"), 200},
		{"second user", s.URL("bob"), 200},
		{"wrong password", "http://alice:nope@" + s.Addr, 407},
		{"no credentials", "http://" + s.Addr, 407},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pu, _ := url.Parse(c.proxy)
			cl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
			resp, err := cl.Get(origin.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s\n%s", resp.StatusCode, c.want, body, s.CacheLog())
			}
			if c.want == 200 && string(body) != "hello" {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestSquidConnectToLoopback(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure")
	}))
	defer origin.Close()
	s := Start(t, Options{Users: map[string]string{"u": "pw"}})
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host := origin.Listener.Addr().String()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		host, host, base64.StdEncoding.EncodeToString([]byte("u:pw")))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
}

func TestSquidHostsFile(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Host)
	}))
	defer origin.Close()
	s := Start(t, Options{Users: map[string]string{"u": "pw"}, Hosts: map[string]string{"origin.buildd-test": "127.0.0.1"}})
	pu, _ := url.Parse(s.URL("u"))
	cl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	resp, err := cl.Get("http://origin.buildd-test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "origin.buildd-test:"+port {
		t.Fatalf("%s %q\n%s", resp.Status, body, s.CacheLog())
	}
}
