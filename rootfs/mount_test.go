package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
	"golang.org/x/sys/unix"
)

// inPrivateMountNS runs fn on an OS thread of its own in a new, private
// mount namespace: whatever fn mounts, even by mistake, is never seen by
// the host and vanishes with the thread (which is never unlocked, so it
// exits with the goroutine).
func inPrivateMountNS(t testing.TB, fn func()) {
	t.Helper()
	testenv.RequireRoot(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make / private: %w", err)
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// withBothMountAPIs runs fn with the new mount API and with mount(2).
func withBothMountAPIs(t *testing.T, fn func(t *testing.T)) {
	t.Run("new-api", func(t *testing.T) {
		if !hasNewMountAPI() {
			t.Skip("kernel without open_tree/mount_setattr")
		}
		fn(t)
	})
	t.Run("mount2", func(t *testing.T) {
		old := hasNewMountAPI
		hasNewMountAPI = func() bool { return false }
		defer func() { hasNewMountAPI = old }()
		fn(t)
	})
}

// mountPoints returns this thread's mount points ("mount id" -> path).
func mountPoints() map[string]string {
	data, _ := os.ReadFile("/proc/thread-self/mountinfo")
	m := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			m[f[0]] = f[4]
		}
	}
	return m
}

func TestBindMount(t *testing.T) {
	withBothMountAPIs(t, func(t *testing.T) {
		root := t.TempDir()
		makeTree(t, root, "dir src", "file src/f", "dir dst")
		inPrivateMountNS(t, func() {
			r, _ := OpenRoot(root)
			defer r.Close()
			src, _ := r.OpenDir("src")
			dst, _ := r.OpenDir("dst")
			defer src.Close()
			defer dst.Close()
			before, _ := mountID(int(dst.Fd()))
			m, err := BindMount(int(src.Fd()), int(dst.Fd()), MountFlags{ReadOnly: true, NoSuid: true, NoDev: true})
			if err != nil {
				t.Errorf("BindMount: %v", err)
				return
			}
			defer m.Close()
			if m.ID == before {
				t.Errorf("mount id unchanged")
			}
			if got := mountPoints()[fmt.Sprint(m.ID)]; got != filepath.Join(root, "dst") {
				t.Errorf("mount %d is on %q", m.ID, got)
			}
			if data, err := os.ReadFile(filepath.Join(root, "dst/f")); err != nil || string(data) != "content of src/f" {
				t.Errorf("bound content = %q, %v", data, err)
			}
			if err := os.WriteFile(filepath.Join(root, "dst/g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write on read-only bind = %v", err)
			}
			if err := Unmount(m); err != nil {
				t.Errorf("Unmount: %v", err)
			}
			if _, ok := mountPoints()[fmt.Sprint(m.ID)]; ok {
				t.Errorf("mount %d still there after Unmount", m.ID)
			}
			// A symlink target is refused before any mount.
			os.Symlink("/etc", filepath.Join(root, "link"))
			if _, err := r.OpenDir("link"); err == nil {
				t.Error("OpenDir of a symlink succeeded")
			}
			// Errors name the step and the path.
			_, err = BindMount(-1, int(dst.Fd()), MountFlags{})
			var me *MountError
			if !errors.As(err, &me) || me.Path != filepath.Join(root, "dst") || me.Step == "" {
				t.Errorf("BindMount(-1) = %v, want a MountError on dst", err)
			}
		})
	})
}

func TestMountFS(t *testing.T) {
	withBothMountAPIs(t, func(t *testing.T) {
		root := t.TempDir()
		makeTree(t, root, "dir tmp")
		inPrivateMountNS(t, func() {
			r, _ := OpenRoot(root)
			defer r.Close()
			dst, _ := r.OpenDir("tmp")
			defer dst.Close()
			m, err := MountFS("tmpfs", map[string]string{"mode": "1777", "size": "1m"}, int(dst.Fd()), MountFlags{NoSuid: true, NoDev: true, NoExec: true})
			if err != nil {
				t.Errorf("MountFS: %v", err)
				return
			}
			var sfs unix.Statfs_t
			unix.Statfs(filepath.Join(root, "tmp"), &sfs)
			if sfs.Type != unix.TMPFS_MAGIC || sfs.Flags&unix.ST_NOEXEC == 0 {
				t.Errorf("tmp is %#x flags %#x", sfs.Type, sfs.Flags)
			}
			if err := Unmount(m); err != nil {
				t.Error(err)
			}
			m.Close()
		})
	})
}

// TestBindMountRace swaps a path component with a symlink to a host
// directory while secure bind mounts run: none may land outside the root.
func TestBindMountRace(t *testing.T) {
	withBothMountAPIs(t, func(t *testing.T) {
		outside := t.TempDir()
		root := t.TempDir()
		makeTree(t, outside, "dir target")
		makeTree(t, root, "dir src", "dir dir/target", "symlink evil "+outside)
		const rounds = 10000
		var mounted, refused, moved atomic.Int64 // bind mounts made, refused, made on a swapped path
		inPrivateMountNS(t, func() {
			r, _ := OpenRoot(root)
			defer r.Close()
			src, _ := r.OpenDir("src")
			defer src.Close()
			stop := make(chan struct{})
			swapped := make(chan int)
			go func() {
				n := 0
				for {
					select {
					case <-stop:
						swapped <- n
						return
					default:
					}
					// Swap and swap back: the symlink is in place for a
					// varying while, and swaps fall between resolution and
					// mount as well as before.
					for range 2 {
						if unix.Renameat2(r.fd, "dir", r.fd, "evil", unix.RENAME_EXCHANGE) == nil {
							n++
						}
						for range n % 16 {
							runtime.Gosched()
						}
					}
					time.Sleep(time.Duration(n%32) * time.Microsecond)
				}
			}()
			for i, attempts := 0, 0; i < rounds && attempts < 50*rounds; attempts++ {
				dst, err := r.OpenDir("dir/target")
				if err != nil {
					continue // the component was the symlink: refused
				}
				i++
				m, err := BindMount(int(src.Fd()), int(dst.Fd()), MountFlags{ReadOnly: true})
				dst.Close()
				if err != nil {
					refused.Add(1)
					continue
				}
				mounted.Add(1)
				mp := mountPoints()[fmt.Sprint(m.ID)]
				if strings.HasPrefix(mp, root+"/evil/") {
					moved.Add(1) // swapped after resolution: still inside
				}
				if !strings.HasPrefix(mp, root+"/") {
					t.Errorf("round %d: mount landed on %q, outside %q", i, mp, root)
				}
				if err := Unmount(m); err != nil {
					t.Errorf("round %d: %v", i, err)
				}
				m.Close()
			}
			close(stop)
			n := <-swapped
			for id, mp := range mountPoints() {
				if strings.HasPrefix(mp, outside) || strings.HasPrefix(mp, root) {
					t.Errorf("mount %s left on %q", id, mp)
				}
			}
			t.Logf("%d mounts (%d on the swapped name), %d refused after resolution, %d swaps", mounted.Load(), moved.Load(), refused.Load(), n)
		})
		if mounted.Load() == 0 {
			t.Error("no mount succeeded at all")
		}
	})
}
