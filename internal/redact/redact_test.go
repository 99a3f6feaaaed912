package redact

import (
	"net/url"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nothing here", "nothing here"},
		{"https://host/path", "https://host/path"},
		{"http://user:secret@host:3128/x", "http://xxxxx@host:3128/x"},
		{"http://TOKEN@host/x", "http://xxxxx@host/x"},
		{"https://:macaroon@host", "https://xxxxx@host"},
		{"unparsable http://u:p%zz@host/x", "unparsable http://xxxxx@host/x"},
		{"raw slash http://u:pa/ss@host/x", "raw slash http://xxxxx@host/x"},
		{"raw hash http://u:pa#ss@host/x", "raw hash http://xxxxx@host/x"},
		{"at in password http://u:p@ss@host/x", "at in password http://xxxxx@host/x"},
		{`Get "http://u:p@h/f?token=abc&x=1": dial tcp: refused`, `Get "http://xxxxx@h/f?token=xxxxx&x=1": dial tcp: refused`},
		{"/relative?access_token=abc#frag", "/relative?access_token=xxxxx#frag"},
		{"https://s3/b?X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F1&list=2", "https://s3/b?X-Amz-Signature=xxxxx&X-Amz-Credential=xxxxx&list=2"},
		{"https://h/x?api%5Fkey=1;page=2", "https://h/x?api%5Fkey=xxxxx;page=2"},
		{"path with @ kept https://host/pkg@1.0", "path with @ kept https://host/pkg@1.0"},
		{"two http://a:b@one/http://c:d@two", "two http://xxxxx@one/http://xxxxx@two"},
		{"<http://u:p@h>", "<http://xxxxx@h>"},
		{"git remote TOKEN@host:path", "git remote TOKEN@host:path"},
	}
	for _, tt := range tests {
		if got := String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzString: for any URL net/url makes with a user, a password or a
// token-like query value, none of them survives, whatever text surrounds it.
func FuzzString(f *testing.F) {
	f.Add("user", "pass", "/p", "token", "value", "see ")
	f.Add("", "a/b#c", "", "sig", "x y", `"`)
	f.Add("TOKEN", "", "/x@y", "X-Amz-Signature", "abcd", "<")
	f.Fuzz(func(t *testing.T, user, pass, path, key, value, prefix string) {
		u := url.URL{Scheme: "https", Host: "h", Path: path}
		if pass != "" {
			u.User = url.UserPassword(user, pass)
		} else if user != "" {
			u.User = url.User(user)
		}
		if secretKey(key) && value != "" {
			u.RawQuery = url.Values{key: {value}}.Encode()
		}
		out := String(prefix + " " + u.String() + " tail")
		// What could legitimately be in the output anyway.
		kept := prefix + " https:// h " + u.EscapedPath() + " " + url.QueryEscape(key) + " tail " + Mask
		for _, secret := range []string{u.User.String(), url.QueryEscape(value)} {
			if len(secret) >= 4 && strings.Contains(out, secret) && !strings.Contains(kept, secret) {
				t.Fatalf("%q survived in %q", secret, out)
			}
		}
	})
}
