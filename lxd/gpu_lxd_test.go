package lxd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// TestGPUDevicesInLXD gives real LXD the devices gpu-nvidia makes, with a
// lister standing in for nvidia-container-cli (this host has no GPU): a
// "driver library" (a host file) and a "GPU" (a character device node made
// on the host with /dev/null's numbers). In a privileged and an
// unprivileged container, the library is bind-mounted at its path and the
// node is there with the host's numbers and mode.
func TestGPUDevicesInLXD(t *testing.T) {
	testenv.RequireRoot(t)
	lib := filepath.Join(t.TempDir(), "libnvidia-test.so.1")
	if err := os.WriteFile(lib, []byte("not really a driver\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := "/dev/buildd-agent-test-nvidia-" + uniqueID()
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", node, err)
	}
	t.Cleanup(func() { _ = os.Remove(node) })
	if err := os.Chmod(node, 0o666); err != nil { // the umask
		t.Fatal(err)
	}
	old := listNvidiaPaths
	t.Cleanup(func() { listNvidiaPaths = old })
	listNvidiaPaths = func(context.Context) ([]byte, error) { return []byte(node + "\n" + lib + "\n"), nil }

	for i, privileged := range []bool{false, true} {
		name := map[bool]string{false: "unprivileged", true: "privileged"}[privileged]
		t.Run(name, func(t *testing.T) {
			h := newTestHost(t, testConfig(t, 174+i))
			log := &testenv.SyncBuffer{}
			c := makeTarget(t, h, target.Spec{BuildID: "gpu-1", Series: "bookworm", Arch: "amd64",
				Privileged: privileged, Constraints: []string{"gpu-nvidia"}}, log)
			ctx := context.Background()
			t.Cleanup(func() { _ = c.Stop(ctx); _ = c.Remove(ctx) })
			if err := c.Create(ctx, chrootImage(t)); err != nil {
				t.Fatalf("Create: %v\n%s", err, log.String())
			}
			if err := c.Start(ctx); err != nil {
				t.Fatalf("Start: %v\n%s", err, log.String())
			}
			if got := output(t, c, "cat", lib); got != "not really a driver\n" {
				t.Errorf("library in the container: %q", got)
			}
			// %t/%T: major/minor in hex; %a: the mode.
			if got := strings.TrimSpace(output(t, c, "stat", "-c", "%F %t:%T %a", node)); got != "character special file 1:3 666" {
				t.Errorf("device node in the container: %q", got)
			}
			// The node works like the host's: /dev/null's numbers.
			output(t, c, "sh", "-c", `echo x > "$1"`, "sh", node)
			if !strings.Contains(log.String(), "Passing the host's NVIDIA GPUs into the container (gpu-nvidia): 2 paths") {
				t.Errorf("build log:\n%s", log.String())
			}
		})
	}
}
