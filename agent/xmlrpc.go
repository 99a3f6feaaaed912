package agent

// XML-RPC as launchpad-buildd speaks it (Twisted's XMLRPC resource on top of
// Python's xmlrpc.client with allow_none): Go has no maintained XML-RPC
// server library, so the codec is ours. The decoder is strict (it accepts
// what Python's marshaller and the spec produce, and refuses the rest with a
// reason); the encoder writes byte for byte what Python's xmlrpc.client
// writes, so that buildd-manager sees no difference.

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Fault codes Twisted's XML-RPC resource uses.
const (
	FaultNotFound = 8001 // procedure not found
	FaultFailure  = 8002 // any other failure
)

// Fault is an XML-RPC fault response.
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string { return fmt.Sprintf("fault %d: %s", f.Code, f.String) }

// Faultf makes a Fault 8002 with a formatted message.
func Faultf(format string, args ...any) *Fault {
	return &Fault{Code: FaultFailure, String: fmt.Sprintf(format, args...)}
}

// Member is one member of an ordered Struct.
type Member struct {
	Name  string
	Value any
}

// Struct is an XML-RPC struct whose members are written in the given order
// (Python dicts keep insertion order, and the reference's responses list
// builder_status first). A map[string]any is written sorted by name.
type Struct []Member

// MaxDepth bounds the nesting of arrays and structs in a request.
const MaxDepth = 64

// Call is a decoded methodCall.
type Call struct {
	Method string
	// Params hold string, int64, bool, float64, []byte, time.Time, nil,
	// []any and map[string]any values.
	Params []any
}

// DecodeRequest parses a methodCall document.
func DecodeRequest(r io.Reader) (*Call, error) {
	p := newParser(r)
	if err := p.root("methodCall"); err != nil {
		return nil, err
	}
	name, err := p.textElement("methodName")
	if err != nil {
		return nil, err
	}
	if !validMethodName(name) {
		return nil, fmt.Errorf("invalid method name %q", name)
	}
	call := &Call{Method: name}
	tok, err := p.structural()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case xml.EndElement: // </methodCall> with no <params>
	case xml.StartElement:
		if t.Name.Local != "params" {
			return nil, fmt.Errorf("unexpected element <%s> in <methodCall>", t.Name.Local)
		}
		call.Params, err = p.params()
		if err != nil {
			return nil, err
		}
		if err := p.expectEnd(); err != nil {
			return nil, err
		}
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if call.Params == nil {
		call.Params = []any{}
	}
	return call, nil
}

// DecodeResponse parses a methodResponse document: its single value, or a
// *Fault as the error. Tests and the Go side of the end-to-end tests use it
// as the build master's half of the protocol.
func DecodeResponse(r io.Reader) (any, error) {
	p := newParser(r)
	if err := p.root("methodResponse"); err != nil {
		return nil, err
	}
	tok, err := p.structural()
	if err != nil {
		return nil, err
	}
	st, ok := tok.(xml.StartElement)
	if !ok {
		return nil, errors.New("empty <methodResponse>")
	}
	var result any
	var fault *Fault
	switch st.Name.Local {
	case "params":
		params, err := p.params()
		if err != nil {
			return nil, err
		}
		if len(params) != 1 {
			return nil, fmt.Errorf("response has %d params, want 1", len(params))
		}
		result = params[0]
	case "fault":
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, errors.New("fault value is not a struct")
		}
		code, ok1 := m["faultCode"].(int64)
		msg, ok2 := m["faultString"].(string)
		if !ok1 || !ok2 {
			return nil, errors.New("fault struct lacks faultCode or faultString")
		}
		fault = &Fault{Code: int(code), String: msg}
		if err := p.expectEnd(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unexpected element <%s> in <methodResponse>", st.Name.Local)
	}
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if fault != nil {
		return nil, fault
	}
	return result, nil
}

func validMethodName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '/') {
			return false
		}
	}
	return true
}

// parser walks encoding/xml's token stream. encoding/xml in strict mode
// already refuses malformed XML, unknown entities and undeclared character
// references; the parser adds the rest: one root element, nothing but
// comments and whitespace around it, no DOCTYPE or processing instructions
// other than the XML declaration, known elements only, bounded depth.
type parser struct {
	d        *xml.Decoder
	sawToken bool
}

func newParser(r io.Reader) *parser {
	d := xml.NewDecoder(r)
	d.Strict = true
	// No CharsetReader: encoding/xml then accepts only UTF-8 (and
	// US-ASCII) declarations, which is what every client sends.
	return &parser{d: d}
}

// token returns the next token that matters: comments are skipped, DOCTYPE
// and processing instructions are refused.
func (p *parser) token() (xml.Token, error) {
	for {
		tok, err := p.d.Token()
		if err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		first := !p.sawToken
		p.sawToken = true
		switch t := tok.(type) {
		case xml.Comment:
			continue
		case xml.Directive:
			return nil, errors.New("DOCTYPE and other directives are not allowed")
		case xml.ProcInst:
			if first && t.Target == "xml" {
				continue
			}
			return nil, fmt.Errorf("processing instruction <?%s?> not allowed", t.Target)
		}
		return tok, nil
	}
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// structural returns the next element start or end, skipping whitespace
// between elements; other text is an error.
func (p *parser) structural() (xml.Token, error) {
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		if cd, ok := tok.(xml.CharData); ok {
			if isSpace(cd) {
				continue
			}
			return nil, fmt.Errorf("unexpected text %q", truncate(string(cd)))
		}
		return tok, nil
	}
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func (p *parser) root(name string) error {
	return p.expectStart(name)
}

func (p *parser) expectStart(name string) error {
	tok, err := p.structural()
	if err != nil {
		return err
	}
	st, ok := tok.(xml.StartElement)
	if !ok {
		return fmt.Errorf("expected <%s>, got </%s>", name, tok.(xml.EndElement).Name.Local)
	}
	if st.Name.Local != name {
		return fmt.Errorf("expected <%s>, got <%s>", name, st.Name.Local)
	}
	if len(st.Attr) != 0 && !onlyNamespaceAttrs(st.Attr) {
		return fmt.Errorf("unexpected attribute %q on <%s>", st.Attr[0].Name.Local, name)
	}
	return nil
}

// onlyNamespaceAttrs allows xmlns declarations (Apache XML-RPC declares
// the "ex" namespace for its extensions) and nothing else.
func onlyNamespaceAttrs(attrs []xml.Attr) bool {
	for _, a := range attrs {
		if a.Name.Space != "xmlns" && !(a.Name.Space == "" && a.Name.Local == "xmlns") {
			return false
		}
	}
	return true
}

// expectEnd consumes the end of the current element (encoding/xml has
// already checked that it matches its start).
func (p *parser) expectEnd() error {
	tok, err := p.structural()
	if err != nil {
		return err
	}
	if st, ok := tok.(xml.StartElement); ok {
		return fmt.Errorf("unexpected element <%s>", st.Name.Local)
	}
	return nil
}

// end checks that nothing but whitespace and comments follows the root.
func (p *parser) end() error {
	for {
		tok, err := p.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.Comment:
		case xml.CharData:
			if !isSpace(t) {
				return fmt.Errorf("trailing text %q after the document", truncate(string(t)))
			}
		default:
			return errors.New("trailing content after the document element")
		}
	}
}

// text reads character data up to the end of the current element; child
// elements are an error.
func (p *parser) text(in string) (string, error) {
	var buf []byte
	for {
		tok, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			buf = append(buf, t...)
		case xml.EndElement:
			return string(buf), nil
		case xml.StartElement:
			return "", fmt.Errorf("unexpected element <%s> in <%s>", t.Name.Local, in)
		}
	}
}

func (p *parser) textElement(name string) (string, error) {
	if err := p.expectStart(name); err != nil {
		return "", err
	}
	return p.text(name)
}

// params reads <param><value>…</value></param>* up to </params>.
func (p *parser) params() ([]any, error) {
	params := []any{}
	for {
		tok, err := p.structural()
		if err != nil {
			return nil, err
		}
		st, ok := tok.(xml.StartElement)
		if !ok {
			return params, nil
		}
		if st.Name.Local != "param" {
			return nil, fmt.Errorf("unexpected element <%s> in <params>", st.Name.Local)
		}
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		params = append(params, v)
		if err := p.expectEnd(); err != nil {
			return nil, err
		}
	}
}

// value reads the inside of a <value> element, up to and including its end.
func (p *parser) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("values nested deeper than %d", MaxDepth)
	}
	var text []byte
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			text = append(text, t...)
		case xml.EndElement:
			// An untyped value is a string.
			return string(text), nil
		case xml.StartElement:
			if !isSpace(text) {
				return nil, fmt.Errorf("text %q mixed with <%s> in <value>", truncate(string(text)), t.Name.Local)
			}
			if len(t.Attr) != 0 && !onlyNamespaceAttrs(t.Attr) {
				return nil, fmt.Errorf("unexpected attribute %q on <%s>", t.Attr[0].Name.Local, t.Name.Local)
			}
			v, err := p.typed(t.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			if err := p.expectEnd(); err != nil {
				return nil, fmt.Errorf("in <value>: %w", err)
			}
			return v, nil
		}
	}
}

// typed reads a typed value's element (its start already consumed) up to
// and including its end.
func (p *parser) typed(name string, depth int) (any, error) {
	switch name {
	case "array":
		return p.array(depth)
	case "struct":
		return p.strct(depth)
	case "nil":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		if s != "" {
			return nil, errors.New("<nil/> must be empty")
		}
		return nil, nil
	}
	s, err := p.text(name)
	if err != nil {
		return nil, err
	}
	switch name {
	case "string":
		return s, nil
	case "i4", "int", "i8":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad <%s> value %q", name, truncate(s))
		}
		if name == "i4" && (n > math.MaxInt32 || n < math.MinInt32) {
			return nil, fmt.Errorf("<i4> value %d out of range", n)
		}
		return n, nil
	case "boolean":
		switch strings.TrimSpace(s) {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
		return nil, fmt.Errorf("bad <boolean> value %q", truncate(s))
	case "double":
		return parseDouble(s)
	case "base64":
		return decodeBase64(s)
	case "dateTime.iso8601":
		return parseDateTime(s)
	}
	return nil, fmt.Errorf("unknown element <%s> in <value>", name)
}

func parseDouble(s string) (float64, error) {
	t := strings.TrimSpace(s)
	// Only decimal notation: ParseFloat would also take "Inf", "NaN",
	// hex floats and digit separators, none of which XML-RPC allows.
	if t == "" {
		return 0, errors.New("empty <double>")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return 0, fmt.Errorf("bad <double> value %q", truncate(s))
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("bad <double> value %q", truncate(s))
	}
	return f, nil
}

// decodeBase64 accepts standard base64 with any whitespace inside (Python
// wraps at 76 columns and ends with a newline).
func decodeBase64(s string) ([]byte, error) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r':
		default:
			clean = append(clean, c)
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Strict().Decode(out, clean)
	if err != nil {
		return nil, fmt.Errorf("bad <base64> value: %v", err)
	}
	return out[:n], nil
}

var dateTimeLayouts = []string{
	"20060102T15:04:05",
	"2006-01-02T15:04:05",
	"20060102T15:04:05Z07:00",
	"2006-01-02T15:04:05Z07:00",
}

// parseDateTime reads XML-RPC's ISO 8601 subset. A time without a zone is
// taken as UTC (XML-RPC leaves it to the parties; both are UTC here).
func parseDateTime(s string) (time.Time, error) {
	t := strings.TrimSpace(s)
	for _, layout := range dateTimeLayouts {
		if v, err := time.Parse(layout, t); err == nil {
			return v.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad <dateTime.iso8601> value %q", truncate(s))
}

func (p *parser) array(depth int) ([]any, error) {
	if err := p.expectStart("data"); err != nil {
		return nil, fmt.Errorf("in <array>: %w", err)
	}
	items := []any{}
	for {
		tok, err := p.structural()
		if err != nil {
			return nil, err
		}
		st, ok := tok.(xml.StartElement)
		if !ok {
			break // </data>
		}
		if st.Name.Local != "value" {
			return nil, fmt.Errorf("unexpected element <%s> in <data>", st.Name.Local)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	if err := p.expectEnd(); err != nil { // </array>
		return nil, fmt.Errorf("in <array>: %w", err)
	}
	return items, nil
}

// strct reads a struct. A name given twice keeps its last value, as
// Python's unmarshaller (a dict) does.
func (p *parser) strct(depth int) (map[string]any, error) {
	m := map[string]any{}
	for {
		tok, err := p.structural()
		if err != nil {
			return nil, err
		}
		st, ok := tok.(xml.StartElement)
		if !ok {
			return m, nil
		}
		if st.Name.Local != "member" {
			return nil, fmt.Errorf("unexpected element <%s> in <struct>", st.Name.Local)
		}
		name, err := p.textElement("name")
		if err != nil {
			return nil, fmt.Errorf("in <member>: %w", err)
		}
		if err := p.expectStart("value"); err != nil {
			return nil, fmt.Errorf("in <member> %q: %w", truncate(name), err)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[name] = v
		if err := p.expectEnd(); err != nil {
			return nil, fmt.Errorf("in <member> %q: %w", truncate(name), err)
		}
	}
}
