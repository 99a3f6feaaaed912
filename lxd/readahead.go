package lxd

import (
	"io"
	"sync"
)

// readAhead reads r in its own goroutine, up to depth chunks ahead of the
// consumer, so that decompression overlaps with what is done with its
// output (tar rewriting, hashing, the upload). On a busy machine the extra
// runnable thread also gets the import a fairer share of the CPU.
type readAhead struct {
	full  chan []byte
	free  chan []byte
	cur   []byte // the chunk being consumed (a whole buffer from full)
	off   int
	stop  chan struct{}
	once  sync.Once
	errMu sync.Mutex
	rerr  error
}

func newReadAhead(r io.Reader, chunk, depth int) *readAhead {
	ra := &readAhead{
		full: make(chan []byte, depth),
		free: make(chan []byte, depth+1),
		stop: make(chan struct{}),
	}
	for range depth + 1 {
		ra.free <- make([]byte, chunk)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		// Fill the chunk, keeping the reader's own error (a truncated
		// stream's io.ErrUnexpectedEOF must not become a clean io.EOF).
		buf = buf[:cap(buf)]
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[n:])
			n += m
		}
		if n > 0 {
			select {
			case ra.full <- buf[:n]:
			case <-ra.stop:
				return
			}
		}
		if err != nil {
			ra.errMu.Lock()
			ra.rerr = err
			ra.errMu.Unlock()
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if ra.cur == nil {
		buf, ok := <-ra.full
		if !ok {
			ra.errMu.Lock()
			defer ra.errMu.Unlock()
			return 0, ra.rerr
		}
		ra.cur, ra.off = buf, 0
	}
	n := copy(p, ra.cur[ra.off:])
	ra.off += n
	if ra.off == len(ra.cur) {
		ra.free <- ra.cur[:cap(ra.cur)]
		ra.cur = nil
	}
	return n, nil
}

// Close stops the reading goroutine (it may be blocked in r until r returns).
func (ra *readAhead) Close() {
	ra.once.Do(func() { close(ra.stop) })
}
