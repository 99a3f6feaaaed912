package builders

// Python's json.dumps, byte for byte, for what the reference passes to
// build tools as JSON.

import (
	"fmt"
	"sort"
	"strings"
)

// PythonJSONString encodes s as Python's json.dumps does by default
// (ensure_ascii): non-ASCII as \uXXXX (surrogate pairs above the BMP), no
// HTML escaping, unlike encoding/json.
func PythonJSONString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\b':
			sb.WriteString(`\b`)
		case r == '\f':
			sb.WriteString(`\f`)
		case r < 0x20 || r >= 0x7f && r <= 0xffff:
			fmt.Fprintf(&sb, `\u%04x`, r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&sb, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// PythonJSONObject is json.dumps(d, sort_keys=True) of a flat string dict.
func PythonJSONObject(values map[string]string) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	// Byte order of UTF-8 is code point order, which is Python's.
	sort.Strings(keys)
	var sb strings.Builder
	sb.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(PythonJSONString(k))
		sb.WriteString(": ")
		sb.WriteString(PythonJSONString(values[k]))
	}
	sb.WriteByte('}')
	return sb.String()
}
