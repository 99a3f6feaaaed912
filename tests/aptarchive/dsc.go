package aptarchive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Files returns the filemap a buildd-manager would send for dscPath: the
// .dsc's own file name and every file its Files field lists, each mapped
// to its path next to the .dsc.
func Files(dscPath string) (map[string]string, error) {
	data, err := os.ReadFile(dscPath)
	if err != nil {
		return nil, fmt.Errorf("cannot read source package: %w", err)
	}
	names, err := ParseDscFiles(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("cannot parse %s: %w", dscPath, err)
	}
	dir := filepath.Dir(dscPath)
	files := map[string]string{filepath.Base(dscPath): dscPath}
	for _, name := range names {
		files[name] = filepath.Join(dir, name)
	}
	return files, nil
}

// maxDscLine bounds one line of a .dsc; real ones are well under 1 KiB.
const maxDscLine = 64 << 10

// ParseDscFiles returns the file names of a .dsc's Files field (the
// "md5 size name" lines), in order. A clearsigned .dsc is read between its
// armour headers. Names must be plain file names: a .dsc is input from
// whoever uploaded it, and a name with a slash or a dot-dot could point
// anywhere.
func ParseDscFiles(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxDscLine)
	var (
		names    []string
		inFiles  bool
		sawFiles bool
		signed   bool
		header   bool // in the armour header of a signed message
		first    = true
	)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if first {
			first = false
			if line == "-----BEGIN PGP SIGNED MESSAGE-----" {
				signed, header = true, true
				continue
			}
		}
		if header {
			if strings.TrimSpace(line) == "" {
				header = false
			}
			continue
		}
		if signed && line == "-----BEGIN PGP SIGNATURE-----" {
			break
		}
		if signed {
			// Dash-escaping (RFC 4880 §7.1).
			line = strings.TrimPrefix(line, "- ")
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if !inFiles {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if len(fields) != 3 {
				return nil, fmt.Errorf("malformed Files line %q", line)
			}
			name := fields[2]
			if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
				return nil, fmt.Errorf("unsafe file name %q in Files", name)
			}
			names = append(names, name)
			continue
		}
		inFiles = false
		if strings.TrimSpace(line) == "" {
			continue
		}
		field, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		if strings.EqualFold(field, "Files") {
			if sawFiles {
				return nil, fmt.Errorf("more than one Files field")
			}
			if strings.TrimSpace(value) != "" {
				return nil, fmt.Errorf("files field has a value on its first line: %q", value)
			}
			inFiles, sawFiles = true, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if !sawFiles {
		return nil, fmt.Errorf("no Files field")
	}
	return names, nil
}
