// Package relocs gives back the memory of a position-independent
// executable's relocation table once the dynamic loader has applied it.
//
// The Debian package's binary is a static PIE (ASLR for a daemon that runs
// as root and parses what the network sends). For PIE the loader reads the
// whole .rela table (2 MB for buildd-agent) at start, and its pages stay
// mapped from the page cache, counted in the process's RSS, although
// nothing reads them again: Go resolves no symbol at run time and a
// static PIE loads no library. Release drops those pages (madvise
// MADV_DONTNEED on their file-backed, never-written range: should anything
// read them again they fault back in from the file, unchanged).
//
// It reads what it needs from /proc/self/auxv (where the program headers
// are in memory) and /proc/self/exe (the dynamic section as linked), with
// no unsafe memory access and without debug/elf, whose size would cost
// more resident memory than this saves.
package relocs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	ptDynamic = 2
	ptPhdr    = 6
	dtNull    = 0
	dtRela    = 7
	dtRelaSz  = 8
	atPhdr    = 3
	phdrSize  = 56 // Elf64_Phdr
	dynSize   = 16 // Elf64_Dyn
)

// Release drops the executable's relocation table from memory and returns
// how many bytes of address range it advised away (0 for an executable
// that is not PIE or has no table).
func Release() (int, error) {
	auxv, err := unix.Auxv()
	if err != nil {
		return 0, fmt.Errorf("cannot read the auxiliary vector: %w", err)
	}
	var phdrAddr uintptr
	for _, kv := range auxv {
		if kv[0] == atPhdr {
			phdrAddr = kv[1]
		}
	}
	if phdrAddr == 0 {
		return 0, errors.New("no AT_PHDR in the auxiliary vector")
	}
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("cannot open the executable: %w", err)
	}
	defer f.Close()
	start, size, err := relaRange(f, phdrAddr)
	if err != nil || size == 0 {
		return 0, err
	}
	page := uintptr(os.Getpagesize())
	from := (start + page - 1) &^ (page - 1) // whole pages only: the ends share theirs
	to := (start + size) &^ (page - 1)
	if to <= from {
		return 0, nil
	}
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, from, to-from, unix.MADV_DONTNEED); e != 0 {
		return 0, fmt.Errorf("cannot release the relocation table: madvise: %w", e)
	}
	return int(to - from), nil
}

// relaRange finds the in-memory range of the relocation table of the ELF
// executable exe, whose program headers are mapped at phdrAddr.
func relaRange(exe io.ReaderAt, phdrAddr uintptr) (start, size uintptr, err error) {
	var eh [64]byte
	if _, err := exe.ReadAt(eh[:], 0); err != nil {
		return 0, 0, fmt.Errorf("cannot read the ELF header: %w", err)
	}
	if string(eh[:4]) != "\x7fELF" || eh[4] != 2 || eh[5] != 1 {
		return 0, 0, errors.New("not a little-endian 64-bit ELF executable")
	}
	le := binary.LittleEndian
	if le.Uint16(eh[16:]) != 3 { // ET_DYN: PIE; ET_EXEC has nothing to relocate
		return 0, 0, nil
	}
	phoff, phnum := le.Uint64(eh[32:]), int(le.Uint16(eh[56:]))
	if phnum == 0 || phnum > 64 || le.Uint16(eh[54:]) != phdrSize {
		return 0, 0, fmt.Errorf("unexpected program header table (%d entries)", phnum)
	}
	ph := make([]byte, phnum*phdrSize)
	if _, err := exe.ReadAt(ph, int64(phoff)); err != nil {
		return 0, 0, fmt.Errorf("cannot read the program headers: %w", err)
	}
	var phdrVaddr, dynOff, dynSz uint64
	havePhdr := false
	for i := 0; i < phnum; i++ {
		p := ph[i*phdrSize:]
		switch le.Uint32(p) {
		case ptPhdr:
			phdrVaddr, havePhdr = le.Uint64(p[16:]), true
		case ptDynamic:
			dynOff, dynSz = le.Uint64(p[8:]), le.Uint64(p[32:])
		}
	}
	if !havePhdr || dynSz == 0 || dynSz > 1<<20 {
		return 0, 0, nil
	}
	base := uint64(phdrAddr) - phdrVaddr // where the loader put the executable
	dyn := make([]byte, dynSz)
	if _, err := exe.ReadAt(dyn, int64(dynOff)); err != nil {
		return 0, 0, fmt.Errorf("cannot read the dynamic section: %w", err)
	}
	var rela, relaSz uint64
	for i := 0; i+dynSize <= len(dyn); i += dynSize {
		switch tag, val := le.Uint64(dyn[i:]), le.Uint64(dyn[i+8:]); tag {
		case dtNull:
			i = len(dyn)
		case dtRela:
			rela = val
		case dtRelaSz:
			relaSz = val
		}
	}
	if rela == 0 || relaSz == 0 {
		return 0, 0, nil
	}
	return uintptr(base + rela), uintptr(relaSz), nil
}
