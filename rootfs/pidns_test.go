package rootfs

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

func TestStartIsolatedExitStatusAndCredentials(t *testing.T) {
	testenv.RequireRoot(t)
	var out bytes.Buffer
	p, err := StartIsolated(IsolatedCommand{
		Args:   []string{"sh", "-c", `echo "pid=$$ uid=$(id -u) gid=$(id -g)"; ls /proc | grep -c '^[0-9]'; exit 7`},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Dir:    "/",
		UID:    65534,
		GID:    65534,
		Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait()
	if err != nil || code != 7 {
		t.Fatalf("exit %d, %v; output %q", code, err, out.String())
	}
	lines := strings.Fields(out.String())
	// The command has a pid of the new namespace (the init is 1; its Go
	// runtime's threads take the next few), and /proc is the namespace's:
	// it shows only the init, the shell and ls/grep, not the host's processes.
	if len(lines) < 4 || lines[1] != "uid=65534" || lines[2] != "gid=65534" {
		t.Fatalf("output %q", out.String())
	}
	if pid, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "pid=")); pid < 2 || pid > 64 {
		t.Errorf("command pid %s; want one of a new namespace", lines[0])
	}
	if n, _ := strconv.Atoi(lines[3]); n == 0 || n > 5 {
		t.Errorf("/proc shows %d processes; want the namespace's own few", n)
	}
}

// TestStartIsolatedKillTakesEverything: a process that leaves the command's
// session and process group, and one that ignores SIGTERM, still die with
// the namespace.
func TestStartIsolatedKillTakesEverything(t *testing.T) {
	testenv.RequireRoot(t)
	// A sleep with a duration no other process has marks ours.
	marker := "6000." + strconv.Itoa(os.Getpid())
	var out bytes.Buffer
	p, err := StartIsolated(IsolatedCommand{
		Args: []string{"sh", "-c", `setsid sleep ` + marker + ` & trap '' TERM; sleep ` + marker},
		Env:  []string{"PATH=/usr/bin:/bin"},
		UID:  65534, GID: 65534,
		Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countProcs(marker) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countProcs(marker); n < 2 {
		t.Fatalf("%d marked processes started; output %q", n, out.String())
	}
	p.Kill()
	code, _ := p.Wait()
	if code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	deadline = time.Now().Add(10 * time.Second)
	for countProcs(marker) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countProcs(marker); n > 0 {
		t.Fatalf("%d processes survived the kill", n)
	}
	p.Kill() // again: harmless
}

func countProcs(marker string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Equal(b, []byte("sleep\x00"+marker+"\x00")) {
			n++
		}
	}
	return n
}

// TestStartIsolatedNewNetwork: with a network of its own the command
// reaches what is served inside (Listen) and nothing on the host's
// loopback; it starts only once released.
func TestStartIsolatedNewNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	curl := testenv.RequireCommand(t, "curl")
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host") }))
	defer host.Close()
	var out bytes.Buffer
	p, err := StartIsolated(IsolatedCommand{
		Args: []string{"sh", "-c", curl + " -sS -m 5 " + host.URL + "/ ; echo host-rc=$?; " + curl + " -sS -m 5 http://127.0.0.1:3142/; echo; echo inside-rc=$?"},
		Env:  []string{"PATH=/usr/bin:/bin"},
		UID:  65534, GID: 65534,
		Stdout: &out, Stderr: &out,
		NewNetwork: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listen(context.Background(), "tcp", "127.0.0.1:3142")
	if err != nil {
		p.Kill()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inside") })}
	go srv.Serve(ln)
	defer srv.Close()
	time.Sleep(100 * time.Millisecond)
	if out.Len() != 0 {
		t.Fatalf("the command ran before Release: %q", out.String())
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); code != 0 || err != nil {
		t.Fatalf("exit %d %v: %s", code, err, out.String())
	}
	got := out.String()
	if strings.Contains(got, "host-rc=0") || !strings.Contains(got, "inside\ninside-rc=0") {
		t.Fatalf("output %q: want the host unreachable and the inside server reached", got)
	}
}
