package rootfs

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression is a tarball's compression, detected by magic number.
type Compression string

// The compressions Decompress knows.
const (
	CompressionNone  Compression = "none"
	CompressionGzip  Compression = "gzip"
	CompressionXz    Compression = "xz"
	CompressionZstd  Compression = "zstd"
	CompressionBzip2 Compression = "bzip2"
)

// DetectCompression tells the compression from the first bytes of a stream.
func DetectCompression(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return CompressionGzip
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return CompressionXz
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompressionZstd
	case bytes.HasPrefix(head, []byte("BZh")):
		return CompressionBzip2
	}
	return CompressionNone
}

// Decompress returns a reader of r's decompressed content, the compression
// being detected from its magic number. Close releases decoder resources
// (it does not close r).
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, "", fmt.Errorf("cannot read tarball header: %w", err)
	}
	c := DetectCompression(head)
	switch c {
	case CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("cannot read gzip stream: %w", err)
		}
		return zr, c, nil
	case CompressionXz:
		xr, err := xz.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("cannot read xz stream: %w", err)
		}
		return io.NopCloser(xr), c, nil
	case CompressionZstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("cannot read zstd stream: %w", err)
		}
		return zr.IOReadCloser(), c, nil
	case CompressionBzip2:
		return io.NopCloser(bzip2.NewReader(br)), c, nil
	}
	return io.NopCloser(br), c, nil
}

// readAhead decompresses in its own goroutine, a few MiB ahead of the
// consumer, so that decompression (one core) and extraction syscalls
// (another) overlap, as `tar -xz` does with its gzip child. The consumer
// copies out of the current chunk without any synchronisation and only
// meets the producer once per chunk: the tar reader's many small reads
// (512-byte headers) cost no goroutine hand-off each, as an io.Pipe's do.
func readAhead(r io.Reader) io.ReadCloser {
	const chunks, chunkSize = 10, 512 << 10
	a := &aheadReader{
		ch:   make(chan []byte, chunks),
		free: make(chan []byte, chunks),
		done: make(chan struct{}),
	}
	for range chunks {
		a.free <- make([]byte, chunkSize)
	}
	go func() {
		defer close(a.ch)
		for {
			var buf []byte
			select {
			case buf = <-a.free:
			case <-a.done:
				return
			}
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				// ch has room for every chunk: this never blocks.
				a.ch <- buf[:n]
			}
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					err = nil
				}
				a.readErr = err // published by close(ch)
				return
			}
		}
	}()
	return a
}

type aheadReader struct {
	ch, free chan []byte
	done     chan struct{}
	readErr  error // the producer's, valid once ch is closed

	cur    []byte // unread part of the current chunk
	chunk  []byte // the current chunk, to recycle
	err    error  // sticky
	closed bool
}

func (a *aheadReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.chunk != nil {
			a.free <- a.chunk[:cap(a.chunk)]
			a.chunk = nil
		}
		buf, ok := <-a.ch
		if !ok {
			a.err = a.readErr
			if a.err == nil {
				a.err = io.EOF
			}
			return 0, a.err
		}
		a.chunk, a.cur = buf, buf
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the producer (after its current read); later Reads fail.
func (a *aheadReader) Close() error {
	if !a.closed {
		a.closed = true
		close(a.done)
		a.cur, a.chunk, a.err = nil, nil, io.ErrClosedPipe
	}
	return nil
}
