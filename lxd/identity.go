package lxd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Files written into every container so that it looks like the host and
// runs no services by accident (launchpad-buildd's mount-chroot, facts §7.5).
const (
	policyRCPath = "/usr/local/sbin/policy-rc.d"
	// policyRC lets udev and snapd start (builds need them) and refuses
	// every other service, as the reference does.
	policyRC = `#! /bin/sh
while :; do
    case "$1" in
        -*)
            shift
            ;;
        systemd-udevd|systemd-udevd.service|udev|udev.service)
            exit 0
            ;;
        snapd|snapd.*)
            exit 0
            ;;
        *)
            echo "Not running services in chroot."
            exit 101
            ;;
    esac
done
`
	snapdDropInDir  = "/etc/systemd/system/snapd.service.d"
	snapdNoCDNPath  = snapdDropInDir + "/no-cdn.conf"
	snapdNoCDN      = "[Service]\nEnvironment=SNAPPY_STORE_NO_CDN=1\n"
	snapdRefreshTmr = "/etc/systemd/system/snapd.refresh.timer"

	// fallbackHosts is used when the image has no (or an empty) /etc/hosts.
	fallbackHosts = "127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"ff00::0\tip6-mcastprefix\n" +
		"ff02::1\tip6-allnodes\n" +
		"ff02::2\tip6-allrouters\n"

	systemdResolvStub = "/run/systemd/resolve/stub-resolv.conf"
	systemdResolvReal = "/run/systemd/resolve/resolv.conf"
)

// containerHosts is the container's /etc/hosts: the image's entries (or the
// fallback) and the host's names on 127.0.1.1, so that `hostname --fqdn`
// resolves inside the container without DNS.
func containerHosts(image []byte, hostname, fqdn string) []byte {
	var b bytes.Buffer
	if len(bytes.TrimSpace(image)) == 0 {
		b.WriteString(fallbackHosts)
	} else {
		b.Write(image)
	}
	fmt.Fprintf(&b, "\n127.0.1.1\t%s %s\n", fqdn, hostname)
	return b.Bytes()
}

// readHostIdentity reads the host's names and resolver configuration.
// `hostname` and `hostname --fqdn` are run as the reference does, so that
// whatever the host's resolver says the FQDN is, the container says too.
func readHostIdentity(ctx context.Context, etc string) (hostIdentity, error) {
	var id hostIdentity
	short, err := exec.CommandContext(ctx, "hostname").Output()
	if err != nil {
		name, herr := os.Hostname()
		if herr != nil {
			return id, fmt.Errorf("cannot read the host name: %w", err)
		}
		short = []byte(name)
	}
	id.hostname = strings.TrimSpace(string(short))
	fqdn, err := exec.CommandContext(ctx, "hostname", "--fqdn").Output()
	if err != nil || strings.TrimSpace(string(fqdn)) == "" {
		// No resolvable FQDN: the short name is what the host would say.
		fqdn = []byte(id.hostname)
	}
	id.fqdn = strings.TrimSpace(string(fqdn))
	if id.hostname == "" || strings.ContainsAny(id.hostname+id.fqdn, " \t\n") {
		return id, fmt.Errorf("cannot use the host name %q (FQDN %q)", id.hostname, id.fqdn)
	}
	id.resolvConf, id.resolvMode, err = hostResolvConf(filepath.Join(etc, "resolv.conf"))
	if err != nil {
		return id, err
	}
	return id, nil
}

// hostResolvConf reads the host's real resolver configuration. A host on
// systemd-resolved has /etc/resolv.conf pointing at the stub (127.0.0.53),
// which is not reachable from the container: its upstream file is used
// instead.
func hostResolvConf(path string) ([]byte, os.FileMode, error) {
	src := path
	if link, err := os.Readlink(path); err == nil {
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(path), link)
		}
		if filepath.Clean(link) == systemdResolvStub {
			if _, err := os.Stat(systemdResolvReal); err == nil {
				src = systemdResolvReal
			}
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read the host's resolver configuration: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read the host's resolver configuration: %w", err)
	}
	return data, fi.Mode().Perm(), nil
}
