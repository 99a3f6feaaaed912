package agent

// The XML-RPC encoder (xmlrpc.go has the types and the decoder).

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encoding. The shapes are Python xmlrpc.client's Marshaller's, newline for
// newline.

const xmlHeader = "<?xml version='1.0'?>\n"

// AppendResponse appends a methodResponse carrying v.
func AppendResponse(buf []byte, v any) ([]byte, error) {
	buf = append(buf, xmlHeader+"<methodResponse>\n<params>\n<param>\n"...)
	buf, err := appendValue(buf, v, 0)
	if err != nil {
		return nil, err
	}
	return append(buf, "</param>\n</params>\n</methodResponse>\n"...), nil
}

// AppendFault appends a methodResponse carrying a fault.
func AppendFault(buf []byte, f *Fault) []byte {
	buf = append(buf, xmlHeader+"<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>"...)
	buf = strconv.AppendInt(buf, int64(f.Code), 10)
	buf = append(buf, "</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>"...)
	buf = appendEscaped(buf, f.String)
	return append(buf, "</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n"...)
}

// AppendRequest appends a methodCall as Python's xmlrpc.client sends it.
func AppendRequest(buf []byte, method string, params ...any) ([]byte, error) {
	buf = append(buf, xmlHeader+"<methodCall>\n<methodName>"...)
	buf = appendEscaped(buf, method)
	buf = append(buf, "</methodName>\n<params>\n"...)
	for _, p := range params {
		buf = append(buf, "<param>\n"...)
		var err error
		if buf, err = appendValue(buf, p, 0); err != nil {
			return nil, err
		}
		buf = append(buf, "</param>\n"...)
	}
	return append(buf, "</params>\n</methodCall>\n"...), nil
}

func appendValue(buf []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("cannot serialize values nested deeper than %d", MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(buf, "<value><nil/></value>"...), nil
	case string:
		buf = append(buf, "<value><string>"...)
		buf = appendEscaped(buf, x)
		return append(buf, "</string></value>\n"...), nil
	case bool:
		if x {
			return append(buf, "<value><boolean>1</boolean></value>\n"...), nil
		}
		return append(buf, "<value><boolean>0</boolean></value>\n"...), nil
	case int:
		return appendInt(buf, int64(x)), nil
	case int64:
		return appendInt(buf, x), nil
	case int32:
		return appendInt(buf, int64(x)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("cannot serialize %v as <double>", x)
		}
		buf = append(buf, "<value><double>"...)
		buf = appendPyFloat(buf, x)
		return append(buf, "</double></value>\n"...), nil
	case []byte:
		buf = append(buf, "<value><base64>\n"...)
		buf = appendBase64Lines(buf, x)
		return append(buf, "</base64></value>\n"...), nil
	case time.Time:
		if y := x.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("cannot serialize year %d as <dateTime.iso8601>", y)
		}
		buf = append(buf, "<value><dateTime.iso8601>"...)
		buf = x.UTC().AppendFormat(buf, "20060102T15:04:05")
		return append(buf, "</dateTime.iso8601></value>\n"...), nil
	case []any:
		buf = append(buf, "<value><array><data>\n"...)
		for _, e := range x {
			var err error
			if buf, err = appendValue(buf, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(buf, "</data></array></value>\n"...), nil
	case []string:
		buf = append(buf, "<value><array><data>\n"...)
		for _, e := range x {
			buf = append(buf, "<value><string>"...)
			buf = appendEscaped(buf, e)
			buf = append(buf, "</string></value>\n"...)
		}
		return append(buf, "</data></array></value>\n"...), nil
	case map[string]any:
		return appendMap(buf, x, depth)
	case map[string]string:
		return appendMap(buf, x, depth)
	case Struct:
		buf = append(buf, "<value><struct>\n"...)
		for _, m := range x {
			var err error
			if buf, err = appendMember(buf, m.Name, m.Value, depth); err != nil {
				return nil, err
			}
		}
		return append(buf, "</struct></value>\n"...), nil
	}
	return appendReflect(buf, v, depth)
}

// appendReflect serialises the other Go values a manager may put in its
// status extras: integer and float kinds, slices and arrays, and maps with
// string keys (sorted, like map[string]any).
func appendReflect(buf []byte, v any, depth int) ([]byte, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return nil, fmt.Errorf("cannot serialize %d: out of range", rv.Uint())
		}
		return appendInt(buf, int64(rv.Uint())), nil
	case reflect.Float32:
		return appendValue(buf, rv.Float(), depth)
	case reflect.String:
		return appendValue(buf, rv.String(), depth)
	case reflect.Bool:
		return appendValue(buf, rv.Bool(), depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return appendValue(buf, nil, depth)
		}
		buf = append(buf, "<value><array><data>\n"...)
		for i := range rv.Len() {
			var err error
			if buf, err = appendValue(buf, rv.Index(i).Interface(), depth+1); err != nil {
				return nil, err
			}
		}
		return append(buf, "</data></array></value>\n"...), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		buf = append(buf, "<value><struct>\n"...)
		for _, k := range keys {
			var err error
			if buf, err = appendMember(buf, k.String(), rv.MapIndex(k).Interface(), depth); err != nil {
				return nil, err
			}
		}
		return append(buf, "</struct></value>\n"...), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return appendValue(buf, nil, depth)
		}
		return appendValue(buf, rv.Elem().Interface(), depth)
	}
	return nil, fmt.Errorf("cannot serialize %T", v)
}

func appendMember(buf []byte, name string, v any, depth int) ([]byte, error) {
	buf = append(buf, "<member>\n<name>"...)
	buf = appendEscaped(buf, name)
	buf = append(buf, "</name>\n"...)
	buf, err := appendValue(buf, v, depth+1)
	if err != nil {
		return nil, err
	}
	return append(buf, "</member>\n"...), nil
}

// appendMap appends a map as a struct with its members sorted by name, as
// Python's Marshaller writes a dict.
func appendMap[V any](buf []byte, m map[string]V, depth int) ([]byte, error) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	buf = append(buf, "<value><struct>\n"...)
	for _, k := range names {
		var err error
		if buf, err = appendMember(buf, k, m[k], depth); err != nil {
			return nil, err
		}
	}
	return append(buf, "</struct></value>\n"...), nil
}

// appendInt writes <int> like Python for 32-bit values; Python refuses
// larger ones, we write them as <i8>, which Python's unmarshaller reads.
func appendInt(buf []byte, n int64) []byte {
	if n > math.MaxInt32 || n < math.MinInt32 {
		buf = append(buf, "<value><i8>"...)
		buf = strconv.AppendInt(buf, n, 10)
		return append(buf, "</i8></value>\n"...)
	}
	buf = append(buf, "<value><int>"...)
	buf = strconv.AppendInt(buf, n, 10)
	return append(buf, "</int></value>\n"...)
}

// appendPyFloat writes f as Python's repr(float) does: the shortest
// round-tripping digits, positional between 1e-4 and 1e16 with at least one
// decimal ("1.0"), scientific otherwise ("1e+16", "1.5e-07").
func appendPyFloat(buf []byte, f float64) []byte {
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	i := bytes.IndexByte(e, 'e')
	exp, _ := strconv.Atoi(string(e[i+1:]))
	if exp < -4 || exp >= 16 {
		return append(buf, e...)
	}
	start := len(buf)
	buf = strconv.AppendFloat(buf, f, 'f', -1, 64)
	if bytes.IndexByte(buf[start:], '.') < 0 {
		buf = append(buf, ".0"...)
	}
	return buf
}

// appendBase64Lines is Python's base64.encodebytes: 76-column lines, each
// ending in a newline; nothing at all for empty input.
func appendBase64Lines(buf []byte, data []byte) []byte {
	const chunk = 57 // 57 bytes → 76 base64 characters
	for len(data) > 0 {
		n := min(chunk, len(data))
		buf = base64.StdEncoding.AppendEncode(buf, data[:n])
		buf = append(buf, '\n')
		data = data[n:]
	}
	return buf
}

// appendEscaped escapes like Python's xmlrpc.client.escape (&, <, >) and
// also writes CR as a character reference so that it survives XML's
// line-end normalisation. Characters XML cannot carry (most controls,
// invalid UTF-8) become U+FFFD rather than making the document unparsable.
func appendEscaped(buf []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' {
			i++
			continue
		}
		var rep string
		width := 1
		switch {
		case c == '&':
			rep = "&amp;"
		case c == '<':
			rep = "&lt;"
		case c == '>':
			rep = "&gt;"
		case c == '\r':
			rep = "&#13;"
		case c == '\n' || c == '\t':
			i++
			continue
		case c < 0x20:
			rep = "\uFFFD"
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r == utf8.RuneError && w == 1) || r == 0xFFFE || r == 0xFFFF || (r >= 0xD800 && r <= 0xDFFF) {
				rep = "\uFFFD"
			} else {
				i += w
				continue
			}
		}
		buf = append(buf, s[last:i]...)
		buf = append(buf, rep...)
		i += width
		last = i
	}
	return append(buf, s[last:]...)
}
