package tests

// The fetch-service mode end to end: a rock build whose proxy_url is a
// session of a real TLS-intercepting proxy (Debian's mitmproxy, standing
// in for Launchpad's fetch service, with its own CA given in secrets). The
// stand-in fetches an https origin through it, which works only because
// the build installed and trusted that CA; apt goes through it too; the
// token is revoked in the fetch service's form; proxy_info() reports the
// fetch service.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

const (
	fetchE2ESession = "sess-5d1c"
	fetchE2EToken   = "fetch-t0ken-9b2e7c"
)

// fetchService is a running mitmdump with proxy authentication.
type fetchService struct {
	url    string // http://session:token@127.0.0.1:port
	caPEM  []byte
	output *testenv.SyncBuffer
}

func startFetchService(t testing.TB) *fetchService {
	t.Helper()
	testenv.RequireCommand(t, "mitmdump")
	conf := t.TempDir()
	port := snapFreePort(t, "127.0.0.1")
	fs := &fetchService{output: &testenv.SyncBuffer{}}
	cmd := exec.Command("mitmdump", "--listen-host", "127.0.0.1", "--listen-port", fmt.Sprint(port),
		"--set", "confdir="+conf, "--proxyauth", fetchE2ESession+":"+fetchE2EToken,
		// The test origin's certificate is self-signed.
		"--ssl-insecure")
	cmd.Stdout, cmd.Stderr = fs.output, fs.output
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start mitmdump: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("mitmdump output:\n%s", fs.output.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ca, err := os.ReadFile(filepath.Join(conf, "mitmproxy-ca-cert.pem"))
		c, derr := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if derr == nil {
			c.Close()
		}
		if err == nil && derr == nil {
			fs.caPEM = ca
			break
		}
		select {
		case <-done:
			t.Fatalf("mitmdump exited:\n%s", fs.output.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mitmdump not ready:\n%s", fs.output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	fs.url = fmt.Sprintf("http://%s:%s@127.0.0.1:%d", fetchE2ESession, fetchE2EToken, port)
	return fs
}

// tlsOrigin serves payload over https on 127.0.0.2 with a certificate of
// its own (IP SAN 127.0.0.2) that nothing in the build trusts.
func tlsOrigin(t testing.TB, payload string) *httptest.Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "origin.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.2")}, DNSNames: []string{"origin.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, payload) }))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestCraftE2EFetchService(t *testing.T) {
	f := newCraftFixture(t)
	s := newFetchSession(t)
	f.repo.WriteFile(t, "rock/rockcraft.yaml", fmt.Sprintf("name: hello\nversion: '7.0'\nstandin-fetch: %s/payload\n", s.origin.URL))
	commit := f.repo.Commit(t, "rock 7.0")
	f.repo.Tag(t, "7.0")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	args := f.buildArgs("rock", "rockcraft", "refs/tags/7.0", "rock")
	s.use(args)
	startCraftBuild(t, a, f, "ROCKFETCH-1", "rock", args)
	st, log := finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want %s", st["revision_id"], commit)
	}
	rock := a.fetch(t, st["filemap"].(map[string]any)["hello_7.0_amd64.rock"].(string))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.rock"), rock, 0o644)
	// The payload came over TLS through the intercepting proxy: the layer
	// (the only blob) holds what the stand-in saw.
	out, err := exec.Command("sh", "-c", "cd "+dir+" && tar -xf hello.rock && for b in blobs/sha256/*; do tar -xOf $b ./standin-seen; done").Output()
	if err != nil {
		t.Fatalf("cannot read the rock's layer: %v", err)
	}
	seen := string(out)
	for _, want := range []string{"env REQUESTS_CA_BUNDLE=/usr/local/share/ca-certificates/local-ca.crt\n",
		"env GOPROXY=direct\n", "env CARGO_HTTP_CAINFO=/usr/local/share/ca-certificates/local-ca.crt\n"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the build did not see %q:\n%s", want, seen)
		}
	}
	for _, want := range []string{"RUN: apt-get -y update\n", fmt.Sprintf("RUN: snap set system proxy.https=http://10.10.10.1:%d/\n", a.proxyPort)} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// mitmdump saw apt's requests too.
	if o := s.fs.output.String(); !strings.Contains(o, "/dists/bookworm/") {
		t.Errorf("mitmdump did not see apt's requests:\n%s", o)
	}
	s.check(t, a, log, seen)
	if snapContainerExists(craftE2EContainer()) {
		t.Errorf("container left")
	}
	a.call(t, "clean")

	// The same build given another CA than the proxy's: TLS through it
	// fails, so the first build's fetch worked only because it trusted
	// the certificate from secrets.
	other := tlsOrigin(t, "unused")
	otherPEM := pemCertificate(other.TLS.Certificates[0].Certificate[0])
	args["secrets"] = map[string]any{"fetch_service_mitm_certificate": base64.StdEncoding.EncodeToString(otherPEM)}
	startCraftBuild(t, a, f, "ROCKFETCH-2", "rock", args)
	st, log = finishedBuild(t, a)
	if st["build_status"] != "BuildStatus.PACKAGEFAIL" || !strings.Contains(log, "cannot fetch "+s.origin.URL+"/payload") {
		t.Errorf("with the wrong CA: build_status = %v; log:\n%s", st["build_status"], log)
	}
	a.call(t, "clean")
}

// pemCertificate is der in PEM.
func pemCertificate(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// fetchSession is a fetch-service session for a build: mitmdump, an https
// origin serving payload that only the session's CA makes trusted, and the
// control API that records the session token's revocations.
type fetchSession struct {
	fs         *fetchService
	origin     *httptest.Server
	payload    string
	revocation string
	mu         sync.Mutex
	revs       []string // `METHOD path auth="…" type="…" body`
}

func newFetchSession(t *testing.T) *fetchSession {
	s := &fetchSession{fs: startFetchService(t), payload: fmt.Sprintf("tls-payload-%d", time.Now().UnixNano())}
	s.origin = tlsOrigin(t, s.payload)
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.revs = append(s.revs, fmt.Sprintf("%s %s auth=%q type=%q %s", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body))
		s.mu.Unlock()
	}))
	t.Cleanup(control.Close)
	s.revocation = control.URL + "/session/" + fetchE2ESession + "/token"
	return s
}

// use puts buildd-manager's fetch-service arguments into args.
func (s *fetchSession) use(args map[string]any) {
	s.mu.Lock()
	s.revs = nil
	s.mu.Unlock()
	args["proxy_url"] = s.fs.url
	args["revocation_endpoint"] = s.revocation
	args["use_fetch_service"] = true
	args["secrets"] = map[string]any{"fetch_service_mitm_certificate": base64.StdEncoding.EncodeToString(s.fs.caPEM)}
}

// check: the build trusted the CA, fetched the payload through mitmdump
// (fetched is what the tool saw), never logged the token, had it revoked
// once in the JSON form, and proxy_info() reports the fetch service.
func (s *fetchSession) check(t *testing.T, a *snapAgent, log, fetched string) {
	t.Helper()
	if !strings.Contains(fetched, "fetched: "+s.payload+"\n") {
		t.Errorf("the build did not fetch the payload over TLS:\n%s", fetched)
	}
	for _, want := range []string{"RUN: update-ca-certificates \n", "RUN: systemctl restart snapd\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log, fetchE2EToken) {
		t.Errorf("the build log shows the session token")
	}
	s.mu.Lock()
	revs := append([]string(nil), s.revs...)
	s.mu.Unlock()
	if want := fmt.Sprintf(`DELETE /session/%s/token auth="" type="application/json" {"token":"%s"}`, fetchE2ESession, fetchE2EToken); len(revs) != 1 || revs[0] != want {
		t.Errorf("revocations = %q, want [%s]", revs, want)
	}
	if pi, ok := a.call(t, "proxy_info").(map[string]any); !ok || pi["use_fetch_service"] != true || pi["revocation_endpoint"] != s.revocation {
		t.Errorf("proxy_info() = %#v", pi)
	}
	if o := s.fs.output.String(); !strings.Contains(o, s.origin.URL+"/payload") {
		t.Errorf("mitmdump did not see the build's request:\n%s", o)
	}
}

// Charm and craft builds in the fetch-service mode, on the flow the rock
// build above tests in full: the stand-in's https fetch through mitmdump
// works (the CA from secrets is trusted), the build sees the fetch-service
// environment, the session token is revoked in its JSON form and never
// logged, and proxy_info() says so.
func TestCraftE2EFetchServiceCharmAndCraft(t *testing.T) {
	f := newCraftFixture(t)
	s := newFetchSession(t)
	yaml := fmt.Sprintf("name: hello\nversion: '8.0'\nstandin-fetch: %s/payload\n", s.origin.URL)
	f.repo.WriteFile(t, "charm/charmcraft.yaml", yaml)
	f.repo.WriteFile(t, "pkg/sourcecraft.yaml", yaml)
	f.repo.Commit(t, "charm and craft 8.0")
	f.repo.Tag(t, "8.0")
	a := startCraftAgent(t)
	a.ensureChroot(t, f.snapFixture)
	for _, tc := range []struct {
		tag, tool, buildPath string
		seen                 func(t *testing.T, filemap map[string]any) string // the stand-in's standin-seen
	}{
		{"charm", "charmcraft", "charm", func(t *testing.T, filemap map[string]any) string {
			sha, _ := filemap["hello_ubuntu-24.04-amd64.manifest"].(string)
			return string(a.fetch(t, sha))
		}},
		{"craft", "sourcecraft", "pkg", func(t *testing.T, filemap map[string]any) string {
			sha, _ := filemap["hello_8.0.tar.xz"].(string)
			tarball := filepath.Join(t.TempDir(), "hello.tar.xz")
			os.WriteFile(tarball, a.fetch(t, sha), 0o644)
			out, err := exec.Command("tar", "-xJOf", tarball, "./standin-seen").Output()
			if err != nil {
				t.Fatalf("cannot read standin-seen from the craft tarball: %v", err)
			}
			return string(out)
		}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			args := f.buildArgs(tc.tag, tc.tool, "refs/tags/8.0", tc.buildPath)
			s.use(args)
			startCraftBuild(t, a, f, strings.ToUpper(tc.tag)+"FETCH-1", tc.tag, args)
			st, log := finishedBuild(t, a)
			defer a.call(t, "clean")
			if st["build_status"] != "BuildStatus.OK" {
				t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
			}
			filemap, _ := st["filemap"].(map[string]any)
			seen := tc.seen(t, filemap)
			for _, want := range []string{"env REQUESTS_CA_BUNDLE=/usr/local/share/ca-certificates/local-ca.crt\n",
				"env GOPROXY=direct\n", "env CARGO_HTTP_CAINFO=/usr/local/share/ca-certificates/local-ca.crt\n"} {
				if !strings.Contains(seen, want) {
					t.Errorf("the build did not see %q:\n%s", want, seen)
				}
			}
			s.check(t, a, log, seen)
		})
	}
}

// A snap build in the fetch-service mode: snapcraft's https fetch through
// mitmdump works because the CA from secrets is trusted, snapd is pointed
// at the session, the token is revoked in its JSON form and never logged,
// and proxy_info() says so.
func TestSnapE2EFetchService(t *testing.T) {
	f := newSnapFixture(t)
	s := newFetchSession(t)
	f.repo.WriteFile(t, "snap/snapcraft.yaml", fmt.Sprintf("name: hello\nversion: '2.0'\nsummary: test snap\nstandin-fetch: %s/payload\n", s.origin.URL))
	commit := f.repo.Commit(t, "hello 2.0")
	f.repo.Tag(t, "2.0")
	a := startSnapAgent(t)
	a.ensureChroot(t, f)
	args := f.buildArgs("refs/tags/2.0")
	s.use(args)
	a.startBuild(t, f, "SNAPFETCH-1", args)
	st, log := finishedBuild(t, a)
	defer a.call(t, "clean")
	if st["build_status"] != "BuildStatus.OK" {
		t.Fatalf("build_status = %v; log:\n%s", st["build_status"], log)
	}
	if st["revision_id"] != commit {
		t.Errorf("revision_id = %v, want %s", st["revision_id"], commit)
	}
	if want := fmt.Sprintf("RUN: snap set system proxy.https=http://10.10.10.1:%d/\n", a.proxyPort); !strings.Contains(log, want) {
		t.Errorf("log lacks %q", want)
	}
	filemap, _ := st["filemap"].(map[string]any)
	sha, _ := filemap["hello_2.0_amd64.manifest"].(string)
	s.check(t, a, log, string(a.fetch(t, sha)))
}
