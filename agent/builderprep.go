package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The lines launchpad-buildd's builder-prep writes at the top of every
// build log (its INIT step): the kernel, as `uname -snrvm`, and the
// versions of the builder's toolchain packages, so that a build log says
// what built it. The agent is itself the first "package" (it may run from
// a binary that dpkg does not know); the others are the host packages the
// managers use, those dpkg knows listed, the rest left out, as the
// reference does.
var toolchainPackages = []string{
	"sbuild", "mmdebstrap", "git-build-recipe", "git", "brz", "bzr-builder", "bzr",
	"dpkg-dev", "python3-debian", "lxd", "uidmap",
}

// writeBuilderPrep writes the builder-prep lines to w. It never fails a
// build: what cannot be found is left out.
func writeBuilderPrep(w io.Writer) {
	fmt.Fprintf(w, "Kernel version: %s\n", kernelVersion())
	var b strings.Builder
	b.WriteString("Buildd toolchain package versions: buildd-agent_" + Version)
	installed := dpkgVersions(toolchainPackages)
	for _, p := range toolchainPackages {
		if v, ok := installed[p]; ok {
			b.WriteString(" " + p + "_" + v)
		}
	}
	b.WriteString(".\n")
	io.WriteString(w, b.String())
}

// kernelVersion is `uname -snrvm`: system, node, release, version, machine.
func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return strings.Join([]string{unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Nodename[:]),
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]),
		unix.ByteSliceToString(u.Machine[:])}, " ")
}

// dpkgVersions asks dpkg-query for the installed versions of pkgs.
func dpkgVersions(pkgs []string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"-W", "-f", "${Package} ${db:Status-Abbrev} ${Version}\\n"}, pkgs...)
	// dpkg-query exits 1 when some package is unknown; its output for the
	// known ones is still right.
	out, _ := exec.CommandContext(ctx, "dpkg-query", args...).Output()
	return parseDpkgVersions(out)
}

// parseDpkgVersions reads "PACKAGE STATUS VERSION" lines (STATUS is dpkg's
// abbreviated status, "ii" for installed) and keeps the installed ones.
// A name or version with characters outside Debian's grammar is dropped:
// the line goes into a build log.
func parseDpkgVersions(out []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[1] != "ii" || !debToken(f[0], "+-.") || !debToken(f[2], "+-.~:") {
			continue
		}
		m[f[0]] = f[2]
	}
	return m
}

// debToken reports whether s is non-empty and made of ASCII letters,
// digits and the given punctuation.
func debToken(s, punct string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(punct, r)) {
			return false
		}
	}
	return true
}
