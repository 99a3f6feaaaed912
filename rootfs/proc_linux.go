package rootfs

import (
	"runtime"
	"strconv"
)

// withProcFd calls fn with the /proc/thread-self/fd/N magic link of fd while
// the goroutine holds its OS thread: thread-self is only meaningful on the
// thread that resolves it, and another thread of the process may live in a
// different mount namespace (runc's ProcThreadSelfFd does the same).
func withProcFd(fd int, fn func(path string) error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return fn(procFdPath(fd))
}

func procFdPath(fd int) string { return "/proc/thread-self/fd/" + strconv.Itoa(fd) }
