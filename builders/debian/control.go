package debian

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds on deb822 input. A build writes the .changes, so nothing here may
// grow without limit; Packages files legitimately have lines of a few
// hundred KiB (Provides of Rust feature packages) and are tens of MiB long,
// which is why only ParseControl, not ControlReader, bounds the total.
const (
	MaxControlLine      = 1 << 20  // bytes in one line
	MaxControlParagraph = 16 << 20 // bytes in one paragraph
	MaxControlSize      = 32 << 20 // bytes read by ParseControl
)

// Field is one field of a deb822 paragraph. Value has the first line's
// value without surrounding whitespace, followed by each continuation line
// as "\n" + the line (leading whitespace kept, trailing removed), as
// python-debian presents multi-line fields.
type Field struct {
	Name, Value string
}

// Paragraph is one deb822 paragraph, fields in file order. Field names are
// unique ignoring case.
type Paragraph []Field

// Get returns the value of the field name, compared case-insensitively.
func (p Paragraph) Get(name string) (string, bool) {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Value returns the value of the field name, or "" when absent.
func (p Paragraph) Value(name string) string {
	v, _ := p.Get(name)
	return v
}

const (
	pgpSignedMessage = "-----BEGIN PGP SIGNED MESSAGE-----"
	pgpSignatureBeg  = "-----BEGIN PGP SIGNATURE-----"
	pgpSignatureEnd  = "-----END PGP SIGNATURE-----"
)

type pgpState int

const (
	pgpNone      pgpState = iota // before the first non-blank line
	pgpUnsigned                  // plain control file
	pgpHeaders                   // armor headers ("Hash: SHA256")
	pgpBody                      // the signed text
	pgpSignature                 // the signature block
	pgpAfter                     // after the signature block
)

// ControlReader reads deb822 paragraphs one at a time (dpkg's
// deb822(5) syntax): fields "Name: value", continuation lines starting
// with a space or tab, paragraphs separated by lines that are empty or
// hold only spaces and tabs, comment lines starting with '#'. An OpenPGP
// clear-signed file (a .dsc or .changes) is read as its signed text: the
// armor headers and the signature are dropped and dash-escaping is undone;
// the signature is not verified.
type ControlReader struct {
	r     *bufio.Reader
	state pgpState
	line  int
	err   error
	buf   []byte
}

// NewControlReader returns a ControlReader reading r.
func NewControlReader(r io.Reader) *ControlReader {
	return &ControlReader{r: bufio.NewReader(r)}
}

// readLine returns the next line without its "\n", or io.EOF.
func (c *ControlReader) readLine() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		frag, err := c.r.ReadSlice('\n')
		if len(c.buf)+len(frag) > MaxControlLine+1 {
			return nil, fmt.Errorf("line %d is longer than %d bytes", c.line+1, MaxControlLine)
		}
		c.buf = append(c.buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(c.buf) > 0 {
			err = nil
		}
		if err != nil {
			return nil, err
		}
		c.line++
		return bytes.TrimSuffix(c.buf, []byte("\n")), nil
	}
}

func isBlank(line []byte) bool {
	return len(bytes.Trim(line, " \t\r")) == 0
}

// Next returns the next paragraph, or io.EOF after the last one.
func (c *ControlReader) Next() (Paragraph, error) {
	if c.err != nil {
		return nil, c.err
	}
	p, err := c.next()
	if err != nil {
		c.err = err
		if err != io.EOF {
			c.err = fmt.Errorf("cannot parse control data: %w", err)
		}
		return nil, c.err
	}
	return p, nil
}

func (c *ControlReader) next() (Paragraph, error) {
	var (
		para Paragraph
		size int
		cur  *strings.Builder // value of the field being read
		seen = map[string]bool{}
	)
	finish := func() {
		if cur != nil {
			para[len(para)-1].Value = cur.String()
			cur = nil
		}
	}
	for {
		line, err := c.readLine()
		if err == io.EOF {
			switch c.state {
			case pgpHeaders, pgpBody, pgpSignature:
				return nil, errors.New("truncated OpenPGP clear-signed message")
			}
			if para != nil {
				finish()
				return para, nil
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if size += len(line); size > MaxControlParagraph {
			return nil, fmt.Errorf("paragraph ending at line %d is larger than %d bytes", c.line, MaxControlParagraph)
		}
		trimmed := bytes.TrimRight(line, " \t\r")
		switch c.state {
		case pgpNone:
			if isBlank(line) {
				continue
			}
			if string(trimmed) == pgpSignedMessage {
				c.state = pgpHeaders
				continue
			}
			c.state = pgpUnsigned
		case pgpHeaders:
			if isBlank(line) {
				c.state = pgpBody
			}
			continue
		case pgpBody:
			if string(trimmed) == pgpSignatureBeg {
				c.state = pgpSignature
				if para != nil {
					finish()
					return para, nil
				}
				continue
			}
			if bytes.HasPrefix(line, []byte("- ")) {
				line = line[2:]
				trimmed = bytes.TrimRight(line, " \t\r")
			} else if bytes.HasPrefix(line, []byte("-")) {
				return nil, fmt.Errorf("line %d: unexpected %q in signed text", c.line, trimmed)
			}
		case pgpSignature:
			if string(trimmed) == pgpSignatureEnd {
				c.state = pgpAfter
			}
			continue
		case pgpAfter:
			if !isBlank(line) {
				return nil, fmt.Errorf("line %d: data after the OpenPGP signature", c.line)
			}
			continue
		}

		switch {
		case isBlank(line):
			if para != nil {
				finish()
				return para, nil
			}
		case line[0] == '#':
			// Comment.
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				return nil, fmt.Errorf("line %d: continuation line outside a field", c.line)
			}
			cur.WriteByte('\n')
			cur.Write(trimmed)
		default:
			name, value, ok := bytes.Cut(trimmed, []byte(":"))
			if !ok {
				return nil, fmt.Errorf("line %d: missing ':' in %q", c.line, truncate(trimmed))
			}
			if err := checkFieldName(name); err != nil {
				return nil, fmt.Errorf("line %d: %w", c.line, err)
			}
			if key := strings.ToLower(string(name)); seen[key] {
				return nil, fmt.Errorf("line %d: duplicate field %q", c.line, name)
			} else {
				seen[key] = true
			}
			finish()
			para = append(para, Field{Name: string(name)})
			cur = &strings.Builder{}
			cur.Write(bytes.Trim(value, " \t"))
		}
	}
}

// checkFieldName applies deb822's rule: printable US-ASCII without spaces
// or ':', not starting with '#' or '-'.
func checkFieldName(name []byte) error {
	if len(name) == 0 {
		return errors.New("empty field name")
	}
	if name[0] == '-' || name[0] == '#' {
		return fmt.Errorf("bad field name %q", name)
	}
	for _, b := range name {
		if b <= ' ' || b > '~' {
			return fmt.Errorf("bad field name %q", name)
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// ParseControl reads every paragraph of a deb822 file (a .dsc, a
// .changes, a control file), reading at most MaxControlSize bytes.
func ParseControl(r io.Reader) ([]Paragraph, error) {
	lr := &io.LimitedReader{R: r, N: MaxControlSize + 1}
	cr := NewControlReader(lr)
	var out []Paragraph
	for {
		p, err := cr.Next()
		if lr.N <= 0 {
			return nil, fmt.Errorf("control data is larger than %d bytes", MaxControlSize)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}
