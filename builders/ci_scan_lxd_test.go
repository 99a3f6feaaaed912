package builders

// ciPrepareScanner and ciScanOutput for real: Debian's clamav (from the
// tests' signed local archive) in a real LXD container on the bridge,
// freshclam downloading from a local mirror (tests/clamavdb) and clamscan
// scanning job output directories as buildd.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/tests/aptarchive"
	"github.com/buildd-agent/buildd-agent/tests/clamavdb"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// The test's own LXD objects and container address on the shared bridge.
const (
	ciScanInstance = "ciscanlxd"
	ciScanAddress  = "10.10.10.173"
)

// scanContainer is a started container with clamav installed.
type scanContainer struct {
	t   *testing.T
	tgt target.Target
	out *scanOutput // what the runners' commands printed
}

// scanOutput collects commands' output; each case resets it.
type scanOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *scanOutput) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *scanOutput) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *scanOutput) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Reset()
}

func startScanContainer(t *testing.T) *scanContainer {
	t.Helper()
	testenv.RequireLXD(t)
	ctx := context.Background()
	archive := aptarchive.Build(t, aptarchive.Options{Set: "clamav"})
	archiveURL := archive.Serve(t, "10.10.10.1:0")

	cfg := lxd.Config{Instance: ciScanInstance, NamePrefix: ciScanInstance, Profile: "buildd-agent-" + ciScanInstance,
		Address: ciScanAddress, ReadyTimeout: 90 * time.Second, ImageMaxCount: 1}
	host, err := lxd.NewHost(ctx, cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() {
		host.Close()
		if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
			_ = c.DeleteProfile(cfg.Profile)
			c.Disconnect()
		}
	})
	out := &scanOutput{}
	tgt, err := host.Factory()(ctx, target.Spec{BuildID: "ciscan-1", Series: "bookworm", Arch: "amd64"},
		target.Options{Log: out, ReadyTimeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Stop(ctx); _ = tgt.Remove(ctx) })
	tarball := testenv.ChrootTarball(t)
	if err := tgt.Create(ctx, target.Image{Path: tarball, SHA1: fileSHA1(t, tarball), Type: "chroot"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := tgt.Start(ctx); err != nil {
		t.Fatalf("Start: %v\n%s", err, out.String())
	}
	c := &scanContainer{t: t, tgt: tgt, out: out}
	// Only the local archive: the container has no route out.
	c.push("/etc/apt/sources.list", archive.SourcesLine(archiveURL)+"\n")
	c.push("/etc/apt/sources.list.d/debian.sources", "")
	if err := tgt.CopyIn(ctx, bytes.NewReader(archive.PublicKey()), "/etc/apt/trusted.gpg.d/ciscan-test.gpg", 0, 0, 0o644); err != nil {
		t.Fatal(err)
	}
	c.sh(`apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install clamav`)
	// What the chroot has and lpci's snap setup gives: the buildd user and
	// the lxd group the jobs run in. The pristine freshclam.conf is kept
	// for each case.
	c.sh(`id buildd >/dev/null 2>&1 || useradd -m buildd; getent group lxd >/dev/null || groupadd lxd
cp /etc/clamav/freshclam.conf /root/freshclam.conf.orig`)
	return c
}

func fileSHA1(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha1.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *scanContainer) push(p, data string) {
	c.t.Helper()
	if err := c.tgt.CopyIn(context.Background(), strings.NewReader(data), p, 0, 0, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// sh runs script as root and fails the test unless it exits 0.
func (c *scanContainer) sh(script string, args ...string) string {
	c.t.Helper()
	var out bytes.Buffer
	code, err := c.tgt.Run(context.Background(), target.Command{Args: append([]string{"sh", "-ec", script, "sh"}, args...), Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		c.t.Fatalf("%s: exit %d, %v\n%s", script, code, err, out.String())
	}
	return out.String()
}

// rootRun is the runner ciPrepareScanner gets: as root.
func (c *scanContainer) rootRun(ctx context.Context, argv, env []string) (int, error) {
	return c.tgt.Run(ctx, target.Command{Args: argv, Env: env, Stdout: c.out, Stderr: c.out})
}

// builddRun is the runner ciScanOutput gets: as buildd, run_ci.py's
// run_build_command prefix (the manager's own runner does the same).
func (c *scanContainer) builddRun(ctx context.Context, argv, env []string) (int, error) {
	argv = append([]string{"runuser", "-u", "buildd", "-g", "buildd", "-G", "lxd", "--"}, argv...)
	return c.tgt.Run(ctx, target.Command{Args: argv, Env: env, Dir: "/build", Stdout: c.out, Stderr: c.out})
}

// appendFile appends as the reference's open(path, mode="a").
func (c *scanContainer) appendFile(ctx context.Context, p string, data []byte) error {
	code, err := c.tgt.Run(ctx, target.Command{Args: []string{"sh", "-c", `cat >> "$1"`, "sh", p}, Stdin: bytes.NewReader(data)})
	if err == nil && code != 0 {
		err = fmt.Errorf("appending to %s: exit %d", p, code)
	}
	return err
}

// reset gives the next case a pristine freshclam.conf, no database and
// fresh job output directories (owned by buildd, as the manager leaves
// them).
func (c *scanContainer) reset() {
	c.t.Helper()
	c.sh(`cp /root/freshclam.conf.orig /etc/clamav/freshclam.conf
rm -rf /var/lib/clamav/* /build/output
mkdir -p /build/output/planted/0/files/sub /build/output/clean/0/files
chown -R buildd:buildd /build/output`)
}

// plant writes a job's output file as buildd would.
func (c *scanContainer) plant(p string, data []byte) {
	c.t.Helper()
	if err := c.tgt.CopyIn(context.Background(), bytes.NewReader(data), p, 0, 0, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.sh(`chown buildd:buildd "$1"`, p)
}

// scan is ciScanOutput of one job's output directory.
func (c *scanContainer) scan(dir string) (bool, error) {
	return ciScanOutput(context.Background(), c.builddRun, dir, []string{"LANG=C.UTF-8"})
}

func TestCIScanLXD(t *testing.T) {
	c := startScanContainer(t)
	ctx := context.Background()
	randomFile := func() []byte {
		b := make([]byte, 4096)
		_, _ = rand.Read(b)
		return b
	}

	// The reference's route: PrivateMirror <url> and freshclam --quiet,
	// from a mirror serving signed databases; a planted EICAR file is
	// detected, a clean job's output is not.
	t.Run("PrivateMirror", func(t *testing.T) {
		c.t = t
		c.reset()
		m := clamavdb.Serve(t, "10.10.10.1:0", clamavdb.Signed())
		if err := ciPrepareScanner(ctx, c.rootRun, c.appendFile, m.URL); err != nil {
			t.Fatalf("ciPrepareScanner: %v\n%s", err, c.out.String())
		}
		conf := c.sh(`cat /etc/clamav/freshclam.conf`)
		if !strings.HasSuffix(conf, "\nPrivateMirror "+m.URL+"\n") {
			t.Errorf("freshclam.conf does not end with the mirror:\n%s", conf)
		}
		// freshclam asked for each database (the .cld first, as a private
		// mirror may keep them) and downloaded each .cvd, from the
		// container's address.
		t.Logf("mirror answered: %+v", m.Requests())
		got := strings.Join(m.Downloaded(), "\n")
		for _, db := range clamavdb.Databases {
			if !strings.Contains(got, "GET /"+db+".cvd 200") {
				t.Errorf("%s.cvd not downloaded; mirror answered:\n%s", db, got)
			}
		}
		for _, r := range m.Requests() {
			if !strings.HasPrefix(r.RemoteAddr, ciScanAddress+":") {
				t.Errorf("request from %s, not the container", r.RemoteAddr)
			}
		}
		if ls := c.sh(`ls /var/lib/clamav`); !strings.Contains(ls, "daily.cvd") || !strings.Contains(ls, "main.cvd") || !strings.Contains(ls, "bytecode.cvd") {
			t.Errorf("database directory: %s", ls)
		}

		c.plant("/build/output/planted/0/files/sub/payload.bin", clamavdb.EICAR())
		c.plant("/build/output/planted/0/files/readme.txt", []byte("harmless\n"))
		c.plant("/build/output/clean/0/files/readme.txt", []byte("harmless\n"))
		c.plant("/build/output/clean/0/files/random.bin", randomFile())
		c.out.Reset()
		clean, err := c.scan("/build/output/planted/0")
		t.Logf("clamscan said:\n%s", c.out.String())
		if clean || err != nil {
			t.Errorf("planted EICAR: clean %v, err %v\n%s", clean, err, c.out.String())
		}
		if !strings.Contains(c.out.String(), "/build/output/planted/0/files/sub/payload.bin: "+clamavdb.EICARSignature+" FOUND") {
			t.Errorf("clamscan output does not name the file:\n%s", c.out.String())
		}
		c.out.Reset()
		if clean, err := c.scan("/build/output/clean/0"); !clean || err != nil {
			t.Errorf("clean output: clean %v, err %v\n%s", clean, err, c.out.String())
		}
		// A directory buildd cannot read is clamscan's exit 2: not clean.
		c.sh(`mkdir -p /root/secret && echo x > /root/secret/f`)
		if clean, err := c.scan("/root/secret"); clean || err == nil {
			t.Errorf("unreadable directory: clean %v, err %v", clean, err)
		}
	})

	// A test-made database cannot come through PrivateMirror: freshclam
	// refuses an unsigned .cvd (its header's RSA signature) and an unsigned
	// .cld (its .info's DSIG), so prepare fails (the manager's PACKAGEFAIL).
	for _, kind := range []string{"cvd", "cld"} {
		t.Run("PrivateMirror refuses an unsigned "+kind, func(t *testing.T) {
			c.t = t
			c.reset()
			planted := randomFile()
			files := map[string][]byte{}
			for _, db := range clamavdb.Databases {
				content := map[string][]byte{db + ".hdb": []byte(clamavdb.HashSignature("BuilddAgent.Test.Planted", planted))}
				if kind == "cvd" {
					files[db+".cvd"] = clamavdb.UnsignedCVD(db, 1, content)
				} else {
					files[db+".cld"] = clamavdb.UnsignedCLD(db, 1, content)
				}
			}
			m := clamavdb.Serve(t, "10.10.10.1:0", files)
			c.out.Reset()
			err := ciPrepareScanner(ctx, c.rootRun, c.appendFile, m.URL)
			if err == nil || !strings.Contains(err.Error(), "freshclam exited") {
				t.Fatalf("ciPrepareScanner = %v, want freshclam to fail\n%s", err, c.out.String())
			}
			t.Logf("freshclam said:\n%s\nmirror answered: %+v", c.out.String(), m.Requests())
			if !strings.Contains(c.out.String(), "Verification") {
				t.Errorf("freshclam did not fail on verification:\n%s", c.out.String())
			}
			if !strings.Contains(strings.Join(m.Downloaded(), "\n"), "GET /daily."+kind+" 200") {
				t.Errorf("daily.%s not downloaded: %v", kind, m.Downloaded())
			}
			if ls := c.sh(`ls /var/lib/clamav`); strings.Contains(ls, ".cvd") || strings.Contains(ls, ".cld") {
				t.Errorf("a refused database was installed: %s", ls)
			}
			// Control: the very same bytes named .cud (loaded unsigned)
			// are a good database that detects the planted file, so only
			// the signature made freshclam refuse them.
			if err := c.tgt.CopyIn(ctx, bytes.NewReader(files["daily."+kind]), "/root/control.cud", 0, 0, 0o644); err != nil {
				t.Fatal(err)
			}
			c.plant("/build/output/planted/0/files/planted.bin", planted)
			var out bytes.Buffer
			code, err := c.tgt.Run(ctx, target.Command{Args: []string{"clamscan", "--database=/root/control.cud", "/build/output/planted/0/files/planted.bin"}, Stdout: &out, Stderr: &out})
			if err != nil || code != 1 || !strings.Contains(out.String(), "planted.bin: BuilddAgent.Test.Planted.UNOFFICIAL FOUND") {
				t.Errorf("control .cud: exit %d, %v\n%s", code, err, out.String())
			}
		})
	}

	// A signature the test makes, for a file only this test has: freshclam
	// takes unsigned databases through DatabaseCustomURL (not something
	// the reference writes), alongside the mirror's signed ones.
	t.Run("test-made hash signature", func(t *testing.T) {
		c.t = t
		c.reset()
		planted := randomFile()
		files := clamavdb.Signed()
		files["buildd-agent-test.hdb"] = []byte(clamavdb.HashSignature("BuilddAgent.Test.Planted", planted))
		m := clamavdb.Serve(t, "10.10.10.1:0", files)
		if err := c.appendFile(ctx, "/etc/clamav/freshclam.conf", []byte("DatabaseCustomURL "+m.URL+"/buildd-agent-test.hdb\n")); err != nil {
			t.Fatal(err)
		}
		c.out.Reset()
		if err := ciPrepareScanner(ctx, c.rootRun, c.appendFile, m.URL); err != nil {
			t.Fatalf("ciPrepareScanner: %v\n%s", err, c.out.String())
		}
		if !strings.Contains(strings.Join(m.Downloaded(), "\n"), "GET /buildd-agent-test.hdb 200") {
			t.Errorf("test-made database not downloaded: %v", m.Downloaded())
		}
		c.plant("/build/output/planted/0/files/planted.bin", planted)
		// The same bytes but one: no match (a hash signature is exact).
		almost := bytes.Clone(planted)
		almost[0] ^= 1
		c.plant("/build/output/clean/0/files/almost.bin", almost)
		c.out.Reset()
		if clean, err := c.scan("/build/output/planted/0"); clean || err != nil {
			t.Errorf("planted file: clean %v, err %v\n%s", clean, err, c.out.String())
		}
		if !strings.Contains(c.out.String(), "planted.bin: BuilddAgent.Test.Planted.UNOFFICIAL FOUND") {
			t.Errorf("clamscan output:\n%s", c.out.String())
		}
		c.out.Reset()
		if clean, err := c.scan("/build/output/clean/0"); !clean || err != nil {
			t.Errorf("clean output: clean %v, err %v\n%s", clean, err, c.out.String())
		}
	})
}
