package builders

// A chroot's own apt sources. launchpad-buildd runs update-debian-chroot
// (apt-get update and dist-upgrade against the chroot's own sources) on
// every build, archives or not; ConfigureArchives does nothing without
// archives. buildd-manager sends translation-templates builds no archives,
// and intltool has to come from somewhere: such a build takes the chroot's
// own sources as its archives, so that they are reached (through the
// archive gate on the chroot backend) and updated as in the reference.

import (
	"bytes"
	"context"
	"errors"
	"path"
	"sort"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/debian"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// aptSourcesMaxBytes bounds what is read of one sources file.
const aptSourcesMaxBytes = 1 << 20

// OneLineSources are the "deb" entries of a one-line sources.list file.
func OneLineSources(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "deb" {
			out = append(out, strings.Join(f, " "))
		}
	}
	return out
}

// Deb822ToOneLine turns the enabled "deb" stanzas of a deb822 .sources
// file into one-line entries (Signed-By as the signed-by option when it
// names a file). Comment lines are dropped first.
func Deb822ToOneLine(data []byte) ([]string, error) {
	var clean bytes.Buffer
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		clean.WriteString(line + "\n")
	}
	paras, err := debian.ParseControl(&clean)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range paras {
		if strings.EqualFold(strings.TrimSpace(p.Value("Enabled")), "no") {
			continue
		}
		if !containsWord(p.Value("Types"), "deb") {
			continue
		}
		opt := ""
		if sb := strings.TrimSpace(p.Value("Signed-By")); sb != "" && !strings.ContainsAny(sb, " \t\n]") {
			opt = "[signed-by=" + sb + "] "
		}
		comps := strings.Join(strings.Fields(p.Value("Components")), " ")
		for _, uri := range strings.Fields(p.Value("URIs")) {
			for _, suite := range strings.Fields(p.Value("Suites")) {
				line := "deb " + opt + uri + " " + suite
				if comps != "" {
					line += " " + comps
				}
				out = append(out, line)
			}
		}
	}
	return out, nil
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// ChrootOwnArchives reads the target's apt sources (sources.list and
// sources.list.d/*.list, *.sources) as one-line "deb" entries.
func (b *ContainerBuild) ChrootOwnArchives(ctx context.Context) ([]string, error) {
	read := func(p string) ([]byte, bool, error) {
		info, err := b.Target.Stat(ctx, p)
		if errors.Is(err, target.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if !info.Mode.IsRegular() {
			return nil, false, nil
		}
		w := &cappedBuffer{max: aptSourcesMaxBytes}
		if err := b.Target.CopyOut(ctx, p, w); err != nil && !errors.Is(err, errCapped) {
			return nil, false, err
		}
		return w.buf.Bytes(), true, nil
	}
	var out []string
	data, ok, err := read("/etc/apt/sources.list")
	if err != nil {
		return nil, err
	}
	if ok {
		out = append(out, OneLineSources(data)...)
	}
	const dir = "/etc/apt/sources.list.d"
	entries, err := b.Target.ListDir(ctx, dir)
	if err != nil && !errors.Is(err, target.ErrNotExist) {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		switch path.Ext(name) {
		case ".list", ".sources":
		default:
			continue
		}
		data, ok, err := read(path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if path.Ext(name) == ".list" {
			out = append(out, OneLineSources(data)...)
			continue
		}
		lines, err := Deb822ToOneLine(data)
		if err != nil {
			b.Logf("Ignoring %s: %v", path.Join(dir, name), err)
			continue
		}
		out = append(out, lines...)
	}
	return out, nil
}
