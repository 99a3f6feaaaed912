package builders

// Archives: launchpad-buildd's SOURCES, KEYS and UPDATE states
// (lpbuildd/target/apt.py).

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/buildd-agent/buildd-agent/proxy"
)

// oneLineSeries keep /etc/apt/sources.list; later series get deb822.
var oneLineSeries = map[string]bool{"trusty": true, "xenial": true, "bionic": true, "focal": true, "jammy": true}

// deb822Options maps one-line source options to deb822 fields.
var deb822Options = map[string]string{
	"arch": "Architectures", "signed-by": "Signed-By", "lang": "Languages", "target": "Targets",
	"trusted": "Trusted", "by-hash": "By-Hash", "pdiffs": "PDiffs", "allow-insecure": "Allow-Insecure",
	"allow-weak": "Allow-Weak", "allow-downgrade-to-insecure": "Allow-Downgrade-To-Insecure",
	"snapshot": "Snapshot", "inrelease-path": "InRelease-Path", "check-valid-until": "Check-Valid-Until",
	"valid-until-min": "Valid-Until-Min", "valid-until-max": "Valid-Until-Max", "check-date": "Check-Date",
	"date-max-future": "Date-Max-Future",
}

// Deb822Sources converts one-line sources.list entries to a deb822 file as
// the reference does for noble and later; lines it cannot convert are
// reported in skipped (and left out), not fatal.
func Deb822Sources(lines []string) (text string, skipped []string) {
	var stanzas []string
	for _, line := range lines {
		stanza, err := deb822Stanza(line)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%q: %v", line, err))
			continue
		}
		stanzas = append(stanzas, stanza)
	}
	return strings.Join(stanzas, "\n"), skipped
}

func deb822Stanza(line string) (string, error) {
	fields := strings.Fields(line)
	if len(fields) < 3 || (fields[0] != "deb" && fields[0] != "deb-src") {
		return "", errors.New("not a deb or deb-src line")
	}
	typ := fields[0]
	rest := fields[1:]
	var opts [][2]string
	if strings.HasPrefix(rest[0], "[") {
		// Options run to the closing bracket, possibly over several fields.
		var raw []string
		for len(rest) > 0 {
			f := rest[0]
			rest = rest[1:]
			raw = append(raw, f)
			if strings.HasSuffix(f, "]") {
				break
			}
		}
		joined := strings.TrimSuffix(strings.TrimPrefix(strings.Join(raw, " "), "["), "]")
		for _, o := range strings.Fields(joined) {
			k, v, ok := strings.Cut(o, "=")
			if !ok {
				return "", fmt.Errorf("option %q has no value", o)
			}
			name, known := deb822Options[k]
			if !known {
				return "", fmt.Errorf("unknown option %q", k)
			}
			opts = append(opts, [2]string{name, v})
		}
	}
	if len(rest) < 2 {
		return "", errors.New("no URI and suite")
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Types: %s\nURIs: %s\nEnabled: yes\nSuites: %s\n", typ, rest[0], rest[1])
	if len(rest) > 2 {
		fmt.Fprintf(&sb, "Components: %s\n", strings.Join(rest[2:], " "))
	}
	for _, o := range opts {
		fmt.Fprintf(&sb, "%s: %s\n", o[0], o[1])
	}
	return sb.String(), nil
}

// AptFile is one file of an apt configuration, written with mode 0644
// owned by root.
type AptFile struct {
	Path string
	Data []byte
}

// AptSetup is what launchpad-buildd's override-sources-list and
// add-trusted-keys write into a build root: files to remove first, files
// to write, and the lines its log shows. Both kinds of build root use it:
// ConfigureArchives copies it into a target, the binarypackage manager
// hands it to sbuild's chroot setup.
type AptSetup struct {
	Remove []string
	Files  []AptFile
	Notes  []string
}

// NewAptSetup builds the setup for archives (sources.list lines) and
// trustedKeys (base64 OpenPGP keys, armoured or binary). Empty inputs give
// an empty setup.
func NewAptSetup(buildID, series string, archives, trustedKeys []string, aptProxy string) (AptSetup, error) {
	var s AptSetup
	add := func(p, text string) { s.Files = append(s.Files, AptFile{Path: p, Data: []byte(text)}) }
	if len(archives) > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("Overriding sources.list in build-%s", buildID))
		if oneLineSeries[series] {
			add("/etc/apt/sources.list", strings.Join(archives, "\n")+"\n")
		} else {
			text, skipped := Deb822Sources(archives)
			for _, sk := range skipped {
				s.Notes = append(s.Notes, "Skipping archive "+sk)
			}
			s.Remove = append(s.Remove, "/etc/apt/sources.list.d/ubuntu.sources", "/etc/apt/sources.list")
			add("/etc/apt/sources.list.d/lp-buildd.sources", text)
		}
		add("/etc/apt/apt.conf.d/99retries", "Acquire::Retries \"3\";\n")
		add("/etc/apt/apt.conf.d/99phasing", "APT::Get::Always-Include-Phased-Updates \"true\";\n")
		for _, pocket := range []string{"proposed", "backports"} {
			add("/etc/apt/preferences.d/"+pocket+".pref", "Package: *\nPin: release a=*-"+pocket+"\nPin-Priority: 500\n")
		}
		if aptProxy != "" {
			add("/etc/apt/apt.conf.d/99proxy", fmt.Sprintf("Acquire::http::Proxy \"%s\";\n", aptProxy))
		}
	}
	for i, k := range trustedKeys {
		key, err := decodeBase64Key(k)
		if err != nil {
			return AptSetup{}, fmt.Errorf("trusted key %d: %w", i, err)
		}
		// apt reads armoured keys from *.asc and binary ones from *.gpg
		// (the reference dearmours with gpg, which minimal images lack).
		ext := ".gpg"
		if bytes.HasPrefix(bytes.TrimSpace(key), []byte("-----BEGIN PGP")) {
			ext = ".asc"
		}
		s.Files = append(s.Files, AptFile{Path: fmt.Sprintf("/etc/apt/trusted.gpg.d/launchpad-buildd-%d%s", i, ext), Data: key})
	}
	return s, nil
}

// ConfigureArchives replaces the target's apt sources with archives and
// adds trustedKeys, then updates and upgrades; any failure is CHROOTFAIL,
// as in the reference. It does nothing when neither is given: this agent's
// images are used as they are rather than upgraded from the network on
// every build.
func (b *ContainerBuild) ConfigureArchives(ctx context.Context, archives, trustedKeys []string, aptProxy string) *Failure {
	if len(archives) == 0 && len(trustedKeys) == 0 {
		return nil
	}
	var gate string
	if l, ok := b.Target.(target.Listener); ok && len(archives) > 0 {
		// The build's network is its own: apt reaches the archives, and
		// only them, through a gate served inside it (proxy/archivegate.go).
		u, err := startArchiveGate(ctx, l, archives, aptProxy, b.Log)
		if err != nil {
			return b.ctxFail(ctx, BuildChrootFail, "cannot start the archive gate: %w", err)
		}
		gate, aptProxy = u, u
	}
	setup, err := NewAptSetup(b.Spec.BuildID, b.Spec.Series, archives, trustedKeys, aptProxy)
	if err != nil {
		return Fail(BuildChrootFail, "%w", err)
	}
	if gate != "" {
		setup.Files = append(setup.Files, AptFile{Path: "/etc/apt/apt.conf.d/99proxy-https",
			Data: []byte(fmt.Sprintf("Acquire::https::Proxy \"%s\";\n", gate))})
	}
	for _, n := range setup.Notes {
		b.Logf("%s", n)
	}
	for _, p := range setup.Remove {
		if f := b.Run(ctx, BuildChrootFail, target.Command{Args: []string{"rm", "-f", p}}); f != nil {
			return f
		}
	}
	for _, f := range setup.Files {
		if err := b.Target.CopyIn(ctx, bytes.NewReader(f.Data), f.Path, 0, 0, 0o644); err != nil {
			return b.ctxFail(ctx, BuildChrootFail, "cannot write %s: %w", f.Path, err)
		}
	}
	env := []string{"LANG=C", "DEBIAN_FRONTEND=noninteractive", "TTY=unknown"}
	update := target.Command{Args: []string{"/usr/bin/apt-get", "-uy", "update"}, Env: env}
	if f := b.Run(ctx, BuildChrootFail, update); f != nil {
		if f.Status != BuildChrootFail {
			return f
		}
		b.Logf("Waiting 15 seconds and trying again ...")
		select {
		case <-ctx.Done():
			return &Failure{Status: BuildAborted, Err: ctx.Err()}
		case <-time.After(aptRetryDelay):
		}
		if f := b.Run(ctx, BuildChrootFail, update); f != nil {
			return f
		}
	}
	return b.Run(ctx, BuildChrootFail, target.Command{
		Args: []string{"/usr/bin/apt-get", "-o", "DPkg::Options::=--force-confold", "-uy", "--purge", "dist-upgrade"},
		Env:  env,
	})
}

// aptRetryDelay is the reference's wait before retrying apt-get update.
var aptRetryDelay = 15 * time.Second

func decodeBase64Key(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(key) == 0 {
		return nil, errors.New("empty key")
	}
	return key, nil
}

// startArchiveGate serves the archive gate on a socket inside the target's
// network (the target closes it when it stops) and returns its URL.
func startArchiveGate(ctx context.Context, l target.Listener, archives []string, aptProxy string, log io.Writer) (string, error) {
	ln, err := l.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	g, err := proxy.StartArchiveGate(ln, proxy.ArchiveGateConfig{Archives: archives, Upstream: aptProxy, Log: log})
	if err != nil {
		ln.Close()
		return "", err
	}
	return g.URL(), nil
}
