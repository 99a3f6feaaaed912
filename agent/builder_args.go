package agent

// Checking the build master's parameters, and the reference's wire texts
// (Python reprs, UNKNOWNSUM info), and finding the secrets in build()
// arguments that the build log must mask.

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

func arity(method string, params []any, names ...string) error {
	if len(params) == len(names) {
		return nil
	}
	if len(names) == 0 {
		return Faultf("%s: takes no parameters, got %d", method, len(params))
	}
	return Faultf("%s: takes %d parameters (%s), got %d", method, len(names), strings.Join(names, ", "), len(params))
}

// xmlrpcType names a decoded value's XML-RPC type.
func xmlrpcType(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case string:
		return "string"
	case int64, int:
		return "int"
	case bool:
		return "boolean"
	case float64:
		return "double"
	case []byte:
		return "base64"
	case time.Time:
		return "dateTime.iso8601"
	case []any:
		return "array"
	case map[string]any:
		return "struct"
	}
	return fmt.Sprintf("%T", v)
}

func paramError(method string, i int, name, want string, got any) error {
	return Faultf("%s: parameter %d (%s) must be %s, got %s", method, i+1, name, want, xmlrpcType(got))
}

func stringOrNil(method string, params []any, i int, name string) (string, error) {
	switch v := params[i].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", paramError(method, i, name, "a string or nil", params[i])
}

// unknownSumInfo is launchpad-buildd's UNKNOWNSUM text, indentation and
// trailing spaces included (it comes from an indented triple-quoted string).
func unknownSumInfo(kind, sum string, indent int) string {
	pad := strings.Repeat(" ", indent)
	return kind + " -> " + sum + "\n" +
		pad + "***** INFO *****\n" +
		pad + "No URL\n" +
		pad + "****************\n" +
		pad
}

// checkBuildID accepts the build master's cookie: a non-empty string that
// is usable as a file name component (managers make build-<id> homes).
func checkBuildID(v any) (string, error) {
	id, ok := v.(string)
	if !ok || id == "" {
		return "", Faultf("build: parameter 1 (buildid) must be a non-empty string, got %s", describe(v))
	}
	if err := checkFileName(id); err != nil || len(id) > 200 {
		return "", Faultf("build: parameter 1 (buildid) %q is not usable as a build id: it must be at most 200 characters, with no '/', control characters, or '.'/'..'", id)
	}
	return id, nil
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return `an empty string`
	case int64:
		return fmt.Sprintf("int %d", x)
	}
	return xmlrpcType(v)
}

// checkFileName refuses names that could leave a directory when used as a
// file name: empty, ".", "..", containing '/' or control characters.
func checkFileName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("name %q is not a file name", name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("name %q is not a plain file name", name)
		}
	}
	return nil
}

// pyReprList formats a list of strings as Python's repr does.
func pyReprList(items []string) string {
	var sb strings.Builder
	sb.WriteByte('[')
	for i, s := range items {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(pyRepr(s))
	}
	sb.WriteByte(']')
	return sb.String()
}

// pyRepr is Python 3's repr(str).
func pyRepr(s string) string {
	quote := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var sb strings.Builder
	sb.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\':
			sb.WriteString(`\\`)
		case r == rune(quote):
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte(quote)
	return sb.String()
}

// Secrets in build arguments are masked in the build log before the build
// writes anything.

var urlPassword = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`://[^:@/\s]*:([^:@/\s]+)@`) })

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "secret") || strings.Contains(k, "token") ||
		strings.Contains(k, "password") || strings.Contains(k, "passwd")
}

// collectSecrets finds the passwords of URLs anywhere in args (proxy_url,
// git URLs, archive lines), and every string under a key named like a
// secret (including the whole "secrets" struct).
func collectSecrets(args map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if len(s) >= minSecretLen && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	var walk func(v any, sensitive bool)
	walk = func(v any, sensitive bool) {
		switch x := v.(type) {
		case string:
			if sensitive {
				add(x)
			}
			for _, m := range urlPassword().FindAllStringSubmatch(x, -1) {
				add(m[1])
				if dec, err := url.PathUnescape(m[1]); err == nil {
					add(dec)
				}
			}
		case []byte:
			if sensitive && utf8.Valid(x) {
				add(string(x))
			}
		case []any:
			for _, e := range x {
				walk(e, sensitive)
			}
		case map[string]any:
			for k, e := range x {
				walk(e, sensitive || isSecretKey(k))
			}
		}
	}
	walk(args, false)
	sort.Strings(out)
	return out
}
