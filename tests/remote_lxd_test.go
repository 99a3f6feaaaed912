package tests

// Remote LXD over TLS ([lxd] remote_url, tls_client_cert, tls_client_key,
// tls_server_cert): this machine's own LXD daemon is made to listen on
// HTTPS on loopback, a client certificate made here is trusted, and a
// container is created and run through the HTTPS connection only. Wrong
// certificates (an untrusted client, a server certificate that is not the
// server's) fail at start with an error that says which and how to fix it,
// in lxd.NewHost and in `buildd-agent run`. Both LXD settings are undone.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// writeCertPair makes a self-signed ECDSA certificate and key (PEM) in dir
// and returns their paths and the certificate's SHA-256 fingerprint.
func writeCertPair(t *testing.T, dir, name string) (certPath, keyPath, fingerprint string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "buildd-agent-test-" + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return certPath, keyPath, hex.EncodeToString(sum[:])
}

// lxdOverHTTPS makes this machine's LXD listen on 127.0.0.1:<free port>,
// trusting a new client certificate, until the test ends. It returns the
// URL and the TLS files (server certificate as LXD reports it).
func lxdOverHTTPS(t *testing.T) (string, lxd.RemoteTLS) {
	t.Helper()
	testenv.RequireLXD(t)
	lxc := testenv.RequireCommand(t, "lxc")
	unix, err := lxdclient.ConnectLXDUnix("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Disconnect()
	srv, _, err := unix.GetServer()
	if err != nil {
		t.Fatal(err)
	}
	if prev, _ := srv.Config["core.https_address"].(string); prev != "" {
		t.Fatalf("LXD already listens on %s (core.https_address); not changing someone else's setting", prev)
	}
	dir := t.TempDir()
	serverCert := filepath.Join(dir, "server.crt")
	if err := os.WriteFile(serverCert, []byte(srv.Environment.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	clientCert, clientKey, fp := writeCertPair(t, dir, "client")
	addr := fmt.Sprintf("127.0.0.1:%d", agentE2EFreePort(t))
	if out, err := exec.Command(lxc, "config", "set", "core.https_address", addr).CombinedOutput(); err != nil {
		t.Fatalf("lxc config set core.https_address: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(lxc, "config", "unset", "core.https_address").CombinedOutput(); err != nil {
			t.Errorf("cannot undo core.https_address: %v\n%s", err, out)
		}
	})
	if out, err := exec.Command(lxc, "config", "trust", "add", clientCert, "--name", "buildd-agent-remote-test").CombinedOutput(); err != nil {
		t.Fatalf("lxc config trust add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(lxc, "config", "trust", "remove", fp).CombinedOutput(); err != nil {
			t.Errorf("cannot remove the trusted test certificate %s: %v\n%s", fp, err, out)
		}
	})
	return "https://" + addr, lxd.RemoteTLS{ClientCert: clientCert, ClientKey: clientKey, ServerCert: serverCert}
}

func TestRemoteLXDOverTLS(t *testing.T) {
	url, tlsFiles := lxdOverHTTPS(t)
	tarball := testenv.ChrootTarball(t)
	ctx := context.Background()
	dir := t.TempDir()

	t.Run("wrong certificates", func(t *testing.T) {
		otherCert, otherKey, _ := writeCertPair(t, dir, "other")
		for _, tc := range []struct {
			name string
			tls  lxd.RemoteTLS
			want []string
		}{
			{"untrusted client", lxd.RemoteTLS{ClientCert: otherCert, ClientKey: otherKey, ServerCert: tlsFiles.ServerCert},
				[]string{"does not trust the client certificate", "lxc config trust add"}},
			{"not the server's certificate", lxd.RemoteTLS{ClientCert: tlsFiles.ClientCert, ClientKey: tlsFiles.ClientKey, ServerCert: otherCert},
				[]string{"does not present the certificate in [lxd] tls_server_cert"}},
			{"key of another certificate", lxd.RemoteTLS{ClientCert: tlsFiles.ClientCert, ClientKey: otherKey, ServerCert: tlsFiles.ServerCert},
				[]string{"do not make a key pair"}},
			{"missing file", lxd.RemoteTLS{ClientCert: filepath.Join(dir, "nope.crt"), ClientKey: tlsFiles.ClientKey, ServerCert: tlsFiles.ServerCert},
				[]string{"tls_client_cert", "no such file"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := lxd.NewHost(ctx, lxd.Config{RemoteURL: url, TLS: tc.tls, Instance: "remotebad", Profile: "buildd-agent-remotebad"})
				if err == nil || !errors.Is(err, lxd.ErrCertificate) {
					t.Fatalf("NewHost = %v, want a certificate error", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			})
		}
		// The daemon stops at start, saying why.
		bin := agentE2EBinary(t)
		conf := filepath.Join(dir, "bad.toml")
		body := fmt.Sprintf("[builder]\nbind_address = \"127.0.0.1\"\nport = %d\nstate_dir = %q\nbackend = \"lxd\"\n\n"+
			"[lxd]\nnat = false\nremote_url = %q\ntls_client_cert = %q\ntls_client_key = %q\ntls_server_cert = %q\n"+
			"profile = \"buildd-agent-remotebad\"\ninstance = \"remotebad\"\n",
			agentE2EFreePort(t), filepath.Join(dir, "state"), url, otherCert, otherKey, tlsFiles.ServerCert)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(cctx, bin, "run", "--config", conf).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("does not trust the client certificate")) {
			t.Errorf("buildd-agent run with an untrusted certificate: %v\n%s", err, out)
		}
	})

	// A whole snap build driven over XML-RPC like buildd-manager, the
	// agent reaching LXD only through remote_url (same daemon, so the
	// builder proxy on the bridge is reachable as on a real LXD host).
	t.Run("snap build through HTTPS", func(t *testing.T) {
		saved := snapE2ELXDExtra
		snapE2ELXDExtra = saved + fmt.Sprintf("remote_url = %q\ntls_client_cert = %q\ntls_client_key = %q\ntls_server_cert = %q\n",
			url, tlsFiles.ClientCert, tlsFiles.ClientKey, tlsFiles.ServerCert)
		defer func() { snapE2ELXDExtra = saved }()
		f := newSnapFixture(t)
		f.repo.WriteFile(t, "snap/snapcraft.yaml", f.snapcraftYAML("1.0"))
		commit := f.repo.Commit(t, "hello 1.0")
		a := startSnapAgent(t)
		a.ensureChroot(t, f)
		a.startBuild(t, f, "SNAPREMOTE-1", f.buildArgs(""))
		st := a.waitState(t, "BuilderStatus.WAITING", 10*time.Minute)
		if st["build_status"] != "BuildStatus.OK" || st["revision_id"] != commit {
			t.Fatalf("status %v; log:\n%s\nagent:\n%s", st, a.fetch(t, "buildlog"), a.output.String())
		}
		filemap, _ := st["filemap"].(map[string]any)
		if _, ok := filemap["hello_1.0_amd64.snap"]; !ok {
			t.Errorf("filemap %v lacks the snap", filemap)
		}
		a.call(t, "clean")
	})

	t.Run("container through HTTPS", func(t *testing.T) {
		cfg := lxd.Config{
			RemoteURL: url, TLS: tlsFiles,
			Instance: "remotetls", NamePrefix: "remotetls", Profile: "buildd-agent-remotetls",
			Address: "10.10.10.157", NAT: false, ReadyTimeout: 90 * time.Second, ImageMaxCount: 1,
		}
		host, err := lxd.NewHost(ctx, cfg)
		if err != nil {
			t.Fatalf("NewHost over %s: %v", url, err)
		}
		t.Cleanup(func() {
			host.Close()
			if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
				_ = c.DeleteProfile(cfg.Profile)
				c.Disconnect()
			}
		})
		if err := host.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		buildLog := &testenv.SyncBuffer{}
		tgt, err := host.Factory()(ctx, target.Spec{BuildID: "remote-1", Series: "bookworm", Arch: "amd64"},
			target.Options{Log: buildLog, ReadyTimeout: 90 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tgt.Stop(ctx); _ = tgt.Remove(ctx) })
		sha, err := proxyTestFileSHA1(tarball)
		if err != nil {
			t.Fatal(err)
		}
		if err := tgt.Create(ctx, target.Image{Path: tarball, SHA1: sha, Type: "chroot"}); err != nil {
			t.Fatalf("Create: %v\n%s", err, buildLog)
		}
		if err := tgt.Start(ctx); err != nil {
			t.Fatalf("Start: %v\n%s", err, buildLog)
		}
		var out bytes.Buffer
		code, err := tgt.Run(ctx, target.Command{Args: []string{"sh", "-c", "echo remote-$(cat /etc/hostname | wc -l)"}, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "remote-1" {
			t.Errorf("exec through HTTPS: exit %d, %v, %q", code, err, out.String())
		}
		// The container is the daemon's, seen on its unix socket too.
		c, err := lxdclient.ConnectLXDUnix("", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Disconnect()
		insts, err := c.GetInstances("")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, i := range insts {
			if strings.HasPrefix(i.Name, "remotetls-") && i.Status == "Running" {
				found = true
			}
		}
		if !found {
			t.Errorf("no running remotetls-* container on the daemon")
		}
	})
}
