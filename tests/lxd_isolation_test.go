package tests

// A build container cannot reach the agent on the bridge. The real agent
// runs with bind_address = "0.0.0.0" (what etc/buildd-agent.toml ships)
// on the LXD backend, which firewalls its own ports off the bridge; a
// container on the bridge, made by the lxd package under a label of its
// own, then tries the agent's XML-RPC at 10.10.10.1 and the builder proxy.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdclient "github.com/canonical/lxd/client"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/lxd"
	"github.com/buildd-agent/buildd-agent/proxy"
	"github.com/buildd-agent/buildd-agent/tests/squidtest"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestLXDContainerCannotReachAgent(t *testing.T) {
	testenv.RequireLXD(t)
	testenv.RequireCommand(t, "squid")
	testenv.RequireCommand(t, "iptables")
	tarball := testenv.ChrootTarball(t)
	ctx := context.Background()

	// The real agent, listening on all interfaces.
	bin := snapE2EBinary(t)
	state := t.TempDir()
	port := snapFreePort(t, "0.0.0.0")
	const profile = "buildd-agent-lxdiso"
	conf := fmt.Sprintf(`[builder]
architectures = ["amd64"]
bind_address = "0.0.0.0"
port = %d
state_dir = %q
backend = "lxd"

[lxd]
bridge = "lpbuilddbr0"
subnet = "10.10.10.1/24"
nat = false
profile = %q
instance = "lxdiso"

[log]
level = "debug"
`, port, state, profile)
	confPath := filepath.Join(state, "buildd-agent.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	agentOut := &testenv.SyncBuffer{}
	cmd := exec.Command(bin, "run", "--config", confPath)
	cmd.Stdout, cmd.Stderr = agentOut, agentOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", agentOut.String())
		}
		if c, err := lxdclient.ConnectLXDUnix("", nil); err == nil {
			_ = c.DeleteProfile(profile)
			c.Disconnect()
		}
	})
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := rpcCall(agentURL, "echo", "ping"); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("agent exited at start:\n%s", agentOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not answer:\n%s", agentOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The host itself reaches it on the bridge address: only traffic
	// arriving from the bridge is refused.
	if resp, err := http.Get(fmt.Sprintf("http://10.10.10.1:%d/filecache/buildlog", port)); err != nil {
		t.Fatalf("the agent is not listening on the bridge address: %v", err)
	} else {
		resp.Body.Close()
	}

	// A container of our own on the bridge.
	cfg := lxd.Config{
		Instance: "lxdisoct", NamePrefix: "lxdisoct", Profile: "buildd-agent-lxdisoct",
		Address: "10.10.10.152", ReadyTimeout: 90 * time.Second, ImageMaxCount: 1,
	}
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
	buildLog := &testenv.SyncBuffer{}
	tgt, err := host.Factory()(ctx, target.Spec{BuildID: "iso-1", Series: "bookworm", Arch: "amd64"},
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
		t.Fatalf("Create: %v", err)
	}
	if err := tgt.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	run := func(args ...string) (string, int) {
		t.Helper()
		var out bytes.Buffer
		code, err := tgt.Run(ctx, target.Command{Args: args, Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return out.String(), code
	}

	// The agent's XML-RPC and file cache, from the container.
	for _, u := range []string{
		fmt.Sprintf("http://10.10.10.1:%d/rpc", port),
		fmt.Sprintf("http://10.10.10.1:%d/filecache/buildlog", port),
	} {
		if out, code := run("curl", "--noproxy", "*", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}", u); code == 0 {
			t.Errorf("the container reached the agent at %s: HTTP %s", u, out)
		}
	}

	// The builder proxy still works from the container.
	const user, pass = "lxdiso", "lxd-iso-s3cret"
	squid := squidtest.Start(t, squidtest.Options{Users: map[string]string{user: pass}, Hosts: map[string]string{"example.com": "127.0.0.1"}})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin payload") }))
	defer origin.Close()
	p, err := proxy.Start(ctx, proxy.Config{Upstream: squid.URL(user), ListenAddr: tgt.ProxyHost() + ":0", Log: buildLog})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx)
	originPort := origin.URL[strings.LastIndexByte(origin.URL, ':')+1:]
	if out, code := run("curl", "-sS", "-m", "20", "-x", p.URL(), "http://example.com:"+originPort+"/"); code != 0 || out != "origin payload" {
		t.Errorf("through the builder proxy: exit %d, %q\nbuild log:\n%s", code, out, buildLog)
	}
}
