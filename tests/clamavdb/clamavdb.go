// Package clamavdb is a local ClamAV database mirror for tests of malware
// scanning (the ci manager's scan_malware): what `freshclam` with
// `PrivateMirror <url>` (launchpad-buildd's [proxy] clamavdatabase)
// downloads, served over HTTP with every request recorded.
//
// Why the databases it serves are what they are. freshclam only takes
// signed databases from a mirror:
//   - with PrivateMirror it asks for <db>.cld first, then <db>.cvd, for each
//     of daily, main and bytecode (libfreshclam query_remote_database_version);
//   - a .cvd's header carries an RSA signature of its MD5, checked against
//     the key compiled into libclamav (cl_cvdverify → cli_versig);
//   - a .cld skips that header check, but the .info file inside must end
//     with a DSIG line signed with the same kind of key (cli_loadinfo, since
//     a .cld is loaded CL_DB_OFFICIAL, never CL_DB_UNSIGNED);
//   - only .cud databases (sigtool --unsigned) are loaded unsigned, and
//     freshclam never asks a mirror for one.
//
// So a database a test makes cannot reach clamscan through PrivateMirror.
// The mirror serves, for daily, main and bytecode, the one signed database
// anybody but Talos can serve: ClamAV's own freshclam test database
// (testdata/talos-test-6.cvd, signed by Talos, from ClamAV 1.4.3's
// unit_tests/input/freshclam_testfiles/test-6.cvd, GPL-2.0, sha256
// 3ac78063d9b428b27060b8bc9bad1fd63445a7c8e39ca91e21edda37eb15a99e). It
// holds a hash signature of the EICAR test file (Eicar-Test-Signature), so
// a planted EICAR file is detected and any other file is not. Test-made
// databases are served too: UnsignedCVD and UnsignedCLD (which freshclam
// must refuse through PrivateMirror), and any file by name, e.g. a .hdb of
// HashSignature lines, which freshclam fetches unsigned only through
// DatabaseCustomURL (a directive the reference does not write).
package clamavdb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed testdata/talos-test-6.cvd
var signedCVD []byte

// SignedCVD is Talos's signed freshclam test database (version 6; see the
// package comment).
func SignedCVD() []byte { return bytes.Clone(signedCVD) }

// EICAR is the EICAR anti-malware test file (68 bytes), which
// SignedCVD's Eicar-Test-Signature detects by its MD5 and size. It is
// assembled here so that no file of the repository is it.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
}

// EICARSignature is the name clamscan reports for EICAR.
const EICARSignature = "Eicar-Test-Signature"

// HashSignature is a .hdb line detecting exactly data as name
// (MD5:size:name).
func HashSignature(name string, data []byte) string {
	sum := md5.Sum(data)
	return fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(data), name)
}

// Databases are the ones freshclam updates by default.
var Databases = []string{"daily", "main", "bytecode"}

// Signed is the mirror's content of a real private mirror: SignedCVD as
// each of Databases' .cvd.
func Signed() map[string][]byte {
	files := map[string][]byte{}
	for _, db := range Databases {
		files[db+".cvd"] = SignedCVD()
	}
	return files
}

// UnsignedCVD is a database container a test makes: a CVD header with a
// right MD5 and a made-up signature, and a .tar.gz of name.info and files.
func UnsignedCVD(name string, version int, files map[string][]byte) []byte {
	return container(name, version, files, true)
}

// UnsignedCLD is the same as an uncompressed CLD (what a private mirror
// keeping scripted updates serves), its .info without a DSIG line.
func UnsignedCLD(name string, version int, files map[string][]byte) []byte {
	return container(name, version, files, false)
}

func container(name string, version int, files map[string][]byte, compressed bool) []byte {
	stime := time.Now().Unix()
	built := time.Unix(stime, 0).UTC().Format("02 Jan 2006 15-04 -0700")
	sigs := 0
	names := make([]string, 0, len(files))
	for n, data := range files {
		names = append(names, n)
		sigs += bytes.Count(data, []byte("\n"))
	}
	sort.Strings(names)
	head := func(md5hex, dsig string) string {
		return fmt.Sprintf("ClamAV-VDB:%s:%d:%d:90:%s:%s:buildd-agent-test:%d", built, version, sigs, md5hex, dsig, stime)
	}
	var info strings.Builder
	info.WriteString(head("X", "X") + "\n")
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&info, "%s:%d:%s\n", n, len(files[n]), hex.EncodeToString(sum[:]))
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	add := func(n string, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
		_, _ = tw.Write(data)
	}
	add("COPYING", []byte("test database made by buildd-agent's tests\n"))
	add(name+".info", []byte(info.String()))
	for _, n := range names {
		add(n, files[n])
	}
	_ = tw.Close()
	body := tarball.Bytes()
	if compressed {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = gz.Bytes()
	}
	sum := md5.Sum(body)
	// A made-up signature of the right shape (base64 digits).
	h := head(hex.EncodeToString(sum[:]), strings.Repeat("A", 342))
	header := make([]byte, 512)
	copy(header, h)
	for i := len(h); i < 512; i++ {
		header[i] = ' '
	}
	return append(header, body...)
}

// Request is one request the mirror answered.
type Request struct {
	Method, Path, Range, RemoteAddr string
	Status                          int
}

// Mirror is a ClamAV database mirror on a test's address.
type Mirror struct {
	URL string // http://host:port, freshclam's PrivateMirror value

	mu       sync.Mutex
	files    map[string][]byte
	requests []Request
}

// Serve serves files (name → content, at /<name>) on addr (e.g.
// "10.10.10.1:0", the LXD bridge, which a container reaches) until the
// test ends. Range and If-Modified-Since requests are answered as a web
// server does (freshclam reads a database's header with Range: bytes=0-511).
func Serve(t testing.TB, addr string, files map[string][]byte) *Mirror {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("clamavdb: cannot listen on %s: %v", addr, err)
	}
	m := &Mirror{URL: "http://" + l.Addr().String(), files: files}
	modTime := time.Now().Add(-time.Hour).Truncate(time.Second)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		name := strings.TrimPrefix(r.URL.Path, "/")
		m.mu.Lock()
		data, ok := m.files[name]
		m.mu.Unlock()
		if !ok || strings.Contains(name, "/") {
			http.NotFound(rec, r)
		} else {
			http.ServeContent(rec, r, name, modTime, bytes.NewReader(data))
		}
		m.mu.Lock()
		m.requests = append(m.requests, Request{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), RemoteAddr: r.RemoteAddr, Status: rec.status})
		m.mu.Unlock()
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m
}

// SetFiles replaces what the mirror serves.
func (m *Mirror) SetFiles(files map[string][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files = files
}

// Requests are the requests answered so far.
func (m *Mirror) Requests() []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Request(nil), m.requests...)
}

// Downloaded are the paths answered in full (200) or in part (206).
func (m *Mirror) Downloaded() []string {
	var out []string
	for _, r := range m.Requests() {
		if r.Status == http.StatusOK || r.Status == http.StatusPartialContent {
			out = append(out, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
		}
	}
	return out
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
