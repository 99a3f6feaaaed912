package debian

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FileEntry is one line of a .dsc or .changes checksum field
// ("<hash> <size> <name>").
type FileEntry struct {
	Hash string
	Size int64
	Name string
}

// Dsc is what the binarypackage manager needs from a source package's
// .dsc.
type Dsc struct {
	Source            string
	Version           string
	BuildDepends      string // raw field values, "" when absent
	BuildDependsArch  string
	BuildDependsIndep string
	Files             []FileEntry // Files (MD5)
	ChecksumsSha1     []FileEntry
	ChecksumsSha256   []FileEntry
	Paragraph         Paragraph // every field
}

// ParseDsc reads a .dsc (clear-signed or not). It must have exactly one
// paragraph; the file lists must be well formed and name plain files (see
// CheckFileName). No field is required: launchpad-buildd only reads the
// Build-Depends fields, and its tests use .dsc files without Source.
func ParseDsc(r io.Reader) (Dsc, error) {
	p, err := singleParagraph(r, ".dsc")
	if err != nil {
		return Dsc{}, err
	}
	d := Dsc{
		Source:            p.Value("Source"),
		Version:           p.Value("Version"),
		BuildDepends:      p.Value("Build-Depends"),
		BuildDependsArch:  p.Value("Build-Depends-Arch"),
		BuildDependsIndep: p.Value("Build-Depends-Indep"),
		Paragraph:         p,
	}
	for _, l := range []struct {
		field string
		hexes int
		dst   *[]FileEntry
	}{
		{"Files", 32, &d.Files},
		{"Checksums-Sha1", 40, &d.ChecksumsSha1},
		{"Checksums-Sha256", 64, &d.ChecksumsSha256},
	} {
		v, ok := p.Get(l.field)
		if !ok {
			continue
		}
		list, err := parseFileList(l.field, v, l.hexes, 3)
		if err != nil {
			return Dsc{}, fmt.Errorf("invalid .dsc: %w", err)
		}
		*l.dst = entriesOf(list)
	}
	return d, nil
}

// BuildDependencies returns the source package's build dependencies:
// Build-Depends and Build-Depends-Arch, and Build-Depends-Indep too when
// archIndep (sbuild -A) is set, in that order (launchpad-buildd's
// getBuildDepends).
func (d Dsc) BuildDependencies(archIndep bool) (Relations, error) {
	fields := []string{"Build-Depends", "Build-Depends-Arch"}
	if archIndep {
		fields = append(fields, "Build-Depends-Indep")
	}
	var deps Relations
	for _, f := range fields {
		v, ok := d.Paragraph.Get(f)
		if !ok {
			continue
		}
		rels, err := ParseRelations(v)
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s: %w", f, err)
		}
		deps = append(deps, rels...)
	}
	return deps, nil
}

// ChangesFile is one line of a .changes Files field
// ("<md5> <size> <section> <priority> <name>").
type ChangesFile struct {
	FileEntry
	Section, Priority string
}

// Changes is what the binarypackage manager needs from the .changes that
// sbuild writes.
type Changes struct {
	Source          string
	Version         string
	Architecture    string
	Files           []ChangesFile
	ChecksumsSha256 []FileEntry
	Paragraph       Paragraph
}

// ParseChanges reads a .changes. The build writes it, so it is hostile
// input: it must be a single paragraph with a Files field, and every file
// named in Files or Checksums-Sha256 must be a plain name (CheckFileName),
// listed once. launchpad-buildd takes the last space-separated word of
// each Files line; a well-formed line gives the same name.
func ParseChanges(r io.Reader) (Changes, error) {
	p, err := singleParagraph(r, ".changes")
	if err != nil {
		return Changes{}, err
	}
	c := Changes{
		Source:       p.Value("Source"),
		Version:      p.Value("Version"),
		Architecture: p.Value("Architecture"),
		Paragraph:    p,
	}
	files, ok := p.Get("Files")
	if !ok {
		return Changes{}, errors.New("invalid .changes: no Files field")
	}
	entries, err := parseFileList("Files", files, 32, 5)
	if err != nil {
		return Changes{}, fmt.Errorf("invalid .changes: %w", err)
	}
	for _, e := range entries {
		c.Files = append(c.Files, ChangesFile{FileEntry: e.FileEntry, Section: e.section, Priority: e.priority})
	}
	if v, ok := p.Get("Checksums-Sha256"); ok {
		list, err := parseFileList("Checksums-Sha256", v, 64, 3)
		if err != nil {
			return Changes{}, fmt.Errorf("invalid .changes: %w", err)
		}
		c.ChecksumsSha256 = entriesOf(list)
	}
	return c, nil
}

func singleParagraph(r io.Reader, what string) (Paragraph, error) {
	paras, err := ParseControl(r)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", what, err)
	}
	if len(paras) != 1 {
		return nil, fmt.Errorf("invalid %s: %d paragraphs, want 1", what, len(paras))
	}
	return paras[0], nil
}

type fileLine struct {
	FileEntry
	section, priority string
}

// parseFileList parses a multi-line checksum field whose lines have
// nfields words: hash, size, [section, priority,] name.
func parseFileList(field, value string, hexes, nfields int) ([]fileLine, error) {
	var out []fileLine
	seen := map[string]bool{}
	first, rest, _ := strings.Cut(value, "\n")
	if trimSpace(first) != "" {
		return nil, fmt.Errorf("%s: unexpected %q on the field's first line", field, truncate([]byte(first)))
	}
	for _, line := range strings.Split(rest, "\n") {
		if trimSpace(line) == "" {
			continue
		}
		w := strings.Fields(line)
		if len(w) != nfields {
			return nil, fmt.Errorf("%s: line %q has %d words, want %d", field, truncate([]byte(line)), len(w), nfields)
		}
		if !isHex(w[0], hexes) {
			return nil, fmt.Errorf("%s: bad checksum %q", field, truncate([]byte(w[0])))
		}
		size, err := strconv.ParseInt(w[1], 10, 64)
		if err != nil || size < 0 || !allDigits(w[1]) {
			return nil, fmt.Errorf("%s: bad size %q", field, truncate([]byte(w[1])))
		}
		name := w[nfields-1]
		if err := CheckFileName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: %q is listed twice", field, name)
		}
		seen[name] = true
		l := fileLine{FileEntry: FileEntry{Hash: strings.ToLower(w[0]), Size: size, Name: name}}
		if nfields == 5 {
			l.section, l.priority = w[2], w[3]
		}
		out = append(out, l)
	}
	return out, nil
}

func entriesOf(list []fileLine) []FileEntry {
	out := make([]FileEntry, len(list))
	for i, l := range list {
		out[i] = l.FileEntry
	}
	return out
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// CheckFileName accepts a plain file name that is safe to join to the
// build directory: not empty, at most 255 bytes, no '/', no control
// characters, not "." or "..", not starting with '-'.
func CheckFileName(name string) error {
	switch {
	case name == "":
		return errors.New("empty file name")
	case len(name) > 255:
		return fmt.Errorf("file name %q is too long", truncate([]byte(name)))
	case name == "." || name == "..":
		return fmt.Errorf("file name %q is not a plain name", name)
	case name[0] == '-':
		return fmt.Errorf("file name %q starts with '-'", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '/' || c < ' ' || c == 0x7f {
			return fmt.Errorf("file name %q is not a plain name", name)
		}
	}
	return nil
}
