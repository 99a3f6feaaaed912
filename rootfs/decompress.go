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
// (another) overlap, as `tar -xz` does with its gzip child.
func readAhead(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	ch := make(chan []byte, 8)
	free := make(chan []byte, 10)
	for range 10 {
		free <- make([]byte, 512<<10)
	}
	done := make(chan struct{})
	var readErr error
	go func() {
		defer close(ch)
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				return
			}
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				select {
				case ch <- buf[:n]:
				case <-done:
					return
				}
			}
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					err = nil
				}
				readErr = err // published by close(ch)
				return
			}
		}
	}()
	go func() {
		for buf := range ch {
			if _, err := pw.Write(buf); err != nil {
				return // the consumer closed: Close also stops the producer
			}
			free <- buf[:cap(buf)]
		}
		pw.CloseWithError(readErr)
	}()
	return &aheadReader{PipeReader: pr, done: done}
}

type aheadReader struct {
	*io.PipeReader
	done   chan struct{}
	closed bool
}

func (a *aheadReader) Close() error {
	if !a.closed {
		a.closed = true
		close(a.done)
	}
	return a.PipeReader.Close()
}
