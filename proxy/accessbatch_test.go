package proxy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// Access lines batched while other requests are in flight still reach the
// build log: at once when nothing else is in flight, within the flush
// delay while a long download is (the log stays live), all of them in the
// end, and the revocation message after the last of them.
func TestAccessLinesBatched(t *testing.T) {
	w := newWorld(t, nil)
	cl := w.client()

	// A download left in flight: its head is read, its body is not.
	long, err := cl.Get(w.origin.URL + "/chunked/104857600")
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, long.Body, 1000)

	// A short request meanwhile: its line comes by the flush delay.
	resp, err := w.client().Get(w.origin.URL + "/size/10?while=long")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFor(t, func() bool { return strings.Contains(w.buildLog.String(), "/size/10?while=long ") }, w.buildLog.String)

	// Many at once, then the download ends.
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := w.client()
			for i := range 20 {
				resp, err := c.Get(fmt.Sprintf("%s/size/%d", w.origin.URL, 100+g*20+i))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	long.Body.Close()
	w.proxy.Stop(context.Background())
	log := w.buildLog.String()
	for n := 100; n < 100+16*20; n++ {
		if !strings.Contains(log, fmt.Sprintf("/size/%d HTTP/1.1\" 200 %d ", n, n)) {
			t.Fatalf("no access line for /size/%d in the build log:\n%s", n, tail(log, 2000))
		}
	}
	if last, rev := strings.LastIndex(log, "/size/"), strings.Index(log, "Revoking proxy token"); rev < last {
		t.Errorf("the revocation message is not after the access lines:\n%s", tail(log, 2000))
	}
}
