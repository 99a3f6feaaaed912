package rootfs

// The chroot target's network.
//
// A chroot build runs in a network namespace of its own (CLONE_NEWNET)
// holding only a loopback interface, which the helper brings up. Nothing
// on the host is reachable from it: not the agent's XML-RPC port and file
// cache, not any other local service. What a build may reach is put
// inside it: Listen opens a listening socket *in the namespace* (a socket
// belongs to the namespace it was created in, whatever thread later uses
// it), on which the agent serves the builder proxy (and, for apt, the
// archive gate). So the build reaches exactly those, at 127.0.0.1, and no
// local process on the host can use the builder proxy's credentials.
// This needs no veth pair, routes or firewall rules, nothing to clean up
// but the sockets, which Stop closes.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// bringUpLoopback sets "lo" up in the helper's new network namespace.
func bringUpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("cannot bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("cannot bring up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("cannot bring up lo: %w", err)
	}
	return nil
}

// Listen opens a listening socket inside the target's network namespace
// (see the design above); it is closed by Stop at the latest.
func (t *chrootTarget) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.helper == nil {
		return nil, fmt.Errorf("cannot listen on %s in chroot %q: it is not running", address, t.chroot)
	}
	ln, err := listenInNetns(ctx, t.helper.Process.Pid, network, address)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s in chroot %q: %w", address, t.chroot, err)
	}
	t.listeners = append(t.listeners, ln)
	return ln, nil
}

// listenInNetns listens in the network namespace of process pid, from a
// thread of its own that enters the namespace and leaves it again. If the
// thread cannot get back to its own namespace it is not unlocked, so Go
// ends it with the goroutine instead of reusing it for other work.
func listenInNetns(ctx context.Context, pid int, network, address string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer unix.Close(own)
		target, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("cannot enter the network namespace: %w", err)}
			return
		}
		var lc net.ListenConfig
		ln, lerr := lc.Listen(ctx, network, address)
		if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
			// Stay locked: this thread dies with the goroutine.
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: errors.Join(lerr, fmt.Errorf("cannot leave the network namespace: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln: ln, err: lerr}
	}()
	r := <-ch
	return r.ln, r.err
}
