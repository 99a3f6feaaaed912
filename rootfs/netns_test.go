package rootfs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// TestChrootNetworkIsolation: a chroot build has a network of its own.
// A server on the host's loopback (as the agent's XML-RPC port is) cannot
// be reached from it; a socket the agent opens with Listen is reachable
// from inside only, and Stop closes it.
func TestChrootNetworkIsolation(t *testing.T) {
	testenv.RequireRoot(t)
	tarball := testenv.ChrootTarball(t)
	home := searchableTempDir(t)
	subuid := filepath.Join(home, "subuid")
	subgid := filepath.Join(home, "subgid")
	os.WriteFile(subuid, []byte("root:1000000:65536\n"), 0o644)
	os.WriteFile(subgid, []byte("root:1000000:65536\n"), 0o644)
	log := &testenv.SyncBuffer{}
	factory := NewChrootFactory(ChrootConfig{BuildHome: filepath.Join(home, "builds"), IDMapUser: "root",
		SubUIDFile: subuid, SubGIDFile: subgid, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	tg, err := factory(ctx, target.Spec{BuildID: "net1", Series: "bookworm", Arch: "amd64"}, target.Options{Log: log, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Create(ctx, target.Image{Path: tarball, Type: "chroot"}); err != nil {
		t.Fatal(err)
	}
	defer tg.Remove(ctx)
	if err := tg.Start(ctx); err != nil {
		t.Fatalf("Start: %v (log: %s)", err, log)
	}

	// A host loopback server, standing for the agent's port.
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostHit := make(chan struct{}, 16)
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			hostHit <- struct{}{}
			c.Close()
		}
	}()
	connect := func(addr string) (string, int) {
		h, p, _ := net.SplitHostPort(addr)
		// bash's /dev/tcp: the chroot has no curl; a line is read back.
		return runOut(t, tg, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && echo hello >&3 && head -n1 <&3", h, p))
	}
	if out, code := connect(host.Addr().String()); code == 0 {
		t.Errorf("the build reached the host's loopback server %s: %q", host.Addr(), out)
	}
	select {
	case <-hostHit:
		t.Errorf("the host loopback server saw a connection from the build")
	default:
	}
	if out, _ := runOut(t, tg, "cat", "/proc/net/dev"); !strings.Contains(out, "lo:") || strings.Count(out, ":") != 1 {
		t.Errorf("interfaces in the build: %q (want lo only)", out)
	}

	// A socket opened inside, on the same port as a host listener.
	l, ok := tg.(target.Listener)
	if !ok {
		t.Fatal("the chroot target is not a target.Listener")
	}
	ln, err := l.Listen(ctx, "tcp", "127.0.0.1:"+portOf(host.Addr().String()))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "inside got %s", line)
			}()
		}
	}()
	if out, code := connect(ln.Addr().String()); code != 0 || out != "inside got hello\n" {
		t.Errorf("the build could not use the socket opened inside: %q, %d", out, code)
	}
	select {
	case <-hostHit:
		t.Errorf("a connection meant for the inside socket reached the host's")
	default:
	}
	// The goroutine that opened it is back in the host's namespace.
	if c, err := net.DialTimeout("tcp", host.Addr().String(), 5*time.Second); err != nil {
		t.Errorf("host loopback after Listen: %v", err)
	} else {
		c.Close()
		<-hostHit
	}
	if err := tg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Errorf("the inside socket is still open after Stop")
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
