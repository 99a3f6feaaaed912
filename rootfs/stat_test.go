package rootfs

import "syscall"

type syscallStat = syscall.Stat_t
