package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
)

// Config.Listener: the proxy serves a listener it is given (one a target
// opened inside its own network) instead of listening itself, names it in
// its URL, and Stop closes it.
func TestProxyServesGivenListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Config{Upstream: "http://u:p@127.0.0.1:1", ListenAddr: "ignored", Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://" + ln.Addr().String() + "/"; p.URL() != want {
		t.Errorf("URL = %s, want %s", p.URL(), want)
	}
	resp, err := http.Get(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a plain request got %s, want the proxy's 400", resp.Status)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("listener still open after Stop: %v", err)
	}
}
