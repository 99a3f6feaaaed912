package rootfs

// The chroot target's host identity: the host's names, and /etc/hosts and
// /etc/hostname written as the LXD target writes them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

func hostNames(ctx context.Context) (hostname, fqdn string) {
	if out, err := exec.CommandContext(ctx, "hostname").Output(); err == nil {
		hostname = strings.TrimSpace(string(out))
	}
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	if out, err := exec.CommandContext(ctx, "hostname", "--fqdn").Output(); err == nil {
		fqdn = strings.TrimSpace(string(out))
	}
	if fqdn == "" {
		fqdn = hostname
	}
	return hostname, fqdn
}

// fallbackHosts is used when the chroot has no (or an empty) /etc/hosts,
// as launchpad-buildd does.
const fallbackHosts = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// chrootHosts is /etc/hosts as the LXD target writes it: the image's
// entries (or the fallback) and the host's names on 127.0.1.1.
func chrootHosts(image []byte, hostname, fqdn string) []byte {
	var b bytes.Buffer
	if len(bytes.TrimSpace(image)) == 0 {
		b.WriteString(fallbackHosts)
	} else {
		b.Write(image)
	}
	fmt.Fprintf(&b, "\n127.0.1.1\t%s %s\n", fqdn, hostname)
	return b.Bytes()
}

func (t *chrootTarget) writeIdentity(hostname, fqdn string) error {
	root, err := OpenRoot(t.chroot)
	if err != nil {
		return err
	}
	defer root.Close()
	var old bytes.Buffer
	if err := copyOutRoot(root, "/etc/hosts", &old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	uid, gid := t.rootIDs()
	if err := writeInRoot(root, "/etc/hosts", bytes.NewReader(chrootHosts(old.Bytes(), hostname, fqdn)), uid, gid, 0o644); err != nil {
		return err
	}
	if err := writeInRoot(root, "/etc/hostname", strings.NewReader(hostname+"\n"), uid, gid, 0o644); err != nil {
		return err
	}
	// The host's resolver configuration; a systemd-resolved stub is
	// replaced by the real upstream list (the stub's 127.0.0.53 would
	// still work, the network being shared, but lpbuildd does this).
	src := "/etc/resolv.conf"
	if l, err := os.Readlink(src); err == nil && strings.HasSuffix(l, "/run/systemd/resolve/stub-resolv.conf") {
		if _, err := os.Stat("/run/systemd/resolve/resolv.conf"); err == nil {
			src = "/run/systemd/resolve/resolv.conf"
		}
	}
	if data, err := os.ReadFile(src); err == nil {
		if err := writeInRoot(root, "/etc/resolv.conf", bytes.NewReader(data), uid, gid, 0o644); err != nil {
			return err
		}
	}
	return nil
}
