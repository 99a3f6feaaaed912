package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// earlyUpstream is an upstream proxy that reads a request head and a little
// of its body, answers with answer (or nothing, if empty) and closes with
// the rest of the body unread: what squid does with request_body_max_size
// (413) or a refused login on a large upload.
func earlyUpstream(t *testing.T, answer string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.CopyN(io.Discard, br, 64<<10)
				io.WriteString(c, answer)
			}(c)
		}
	}()
	return l.Addr().String()
}

// An upstream that answers before it has read the request body, then
// closes: the client gets that answer (not a 502) and then a close, on the
// fast path as net/http's transport would give it, for both body framings.
func TestEarlyAnswerToRequestBody(t *testing.T) {
	const answer = "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
	for _, tc := range []struct {
		name, answer string
		status       int
		body         string
	}{
		{"answer", answer, http.StatusRequestEntityTooLarge, "too large"},
		{"no answer", "", http.StatusBadGateway, "could not forward POST"},
	} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s chunked=%v", tc.name, chunked), func(t *testing.T) {
				up := earlyUpstream(t, tc.answer)
				w := newWorld(t, func(c *Config) { c.Upstream = "http://" + testUser + ":pw@" + up })
				c, err := net.Dial("tcp", hostPortOf(w.proxy.URL()))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				const size = 32 << 20
				framing := fmt.Sprintf("Content-Length: %d", size)
				if chunked {
					framing = "Transfer-Encoding: chunked"
				}
				go func() {
					fmt.Fprintf(c, "POST http://example.com/upload HTTP/1.1\r\nHost: example.com\r\n%s\r\n\r\n", framing)
					chunk := strings.Repeat("x", 32<<10)
					for sent := 0; sent < size; sent += len(chunk) {
						var err error
						if chunked {
							_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
						} else {
							_, err = io.WriteString(c, chunk)
						}
						if err != nil {
							return // the proxy closed: expected
						}
					}
				}()
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("no answer from the proxy: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
					t.Errorf("got %s %q, want %d with %q", resp.Status, body, tc.status, tc.body)
				}
				if !resp.Close {
					t.Errorf("the answer does not close the connection (the rest of the body was not read): %v", resp.Header)
				}
				waitFor(t, func() bool {
					return strings.Contains(w.buildLog.String(), fmt.Sprintf(`"POST http://example.com/upload HTTP/1.1" %d `, tc.status))
				}, w.buildLog.String)
			})
		}
	}
}
