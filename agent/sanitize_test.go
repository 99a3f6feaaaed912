package agent

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/testenv"
)

// The cases of launchpad-buildd's lpbuildd/tests/test_builder.py
// TestSanitizeURLs, plus the corners of the two patterns.
func TestSanitizeLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no URL", "Nothing to see here.\n", "Nothing to see here.\n"},
		{"URL without credentials", "Fetching http://archive.example/ubuntu/dists/jammy\n", "Fetching http://archive.example/ubuntu/dists/jammy\n"},
		{"URL with credentials", "Setting up http://buildd:secret@host\n", "Setting up http://host\n"},
		{"path kept", "GET https://buildd:secret@private-ppa.example/owner/ppa/ubuntu jammy", "GET https://private-ppa.example/owner/ppa/ubuntu jammy"},
		{"two URLs on a line", "http://a:b@one/x and https://c:d@two/y\n", "http://one/x and https://two/y\n"},
		{"user without password kept", "git clone https://user@host/repo\n", "git clone https://user@host/repo\n"},
		{"empty user, password", "https://:macaroon@host/f\n", "https://host/f\n"},
		{"empty password not a credential", "http://user:@host\n", "http://user:@host\n"},
		{"proxyauth removed", "socat STDIO PROXY:10.10.10.1:host:443,proxyport=8222,proxyauth=user:blah\n", "socat STDIO PROXY:10.10.10.1:host:443,proxyport=8222\n"},
		{"proxyauth uuid", "x,proxyauth=u:123e4567-e89b-12d3-a456-426614174000,fork", "x,fork"},
		{"vertical tab ends the host as in Python", "http://u:p@host\vrest", "http://host\vrest"},
		{"invalid UTF-8 kept", "http://u\xff:p\xfe@h\xfdost \xff\n", "http://h\xfdost \xff\n"},
		{"no host", "http://u:p@ x", "http://u:p@ x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(SanitizeLine([]byte(tt.in))); got != tt.want {
				t.Errorf("SanitizeLine(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := string(SanitizeLines([]byte(tt.in))); got != tt.want {
				t.Errorf("SanitizeLines(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// appendSanitized (candidate lines only) equals sanitising every line.
func TestSanitizeLinesEqualsEveryLine(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	pieces := []string{"://", "http://u:p@h/x", ",proxyauth=a:b-1", "\n", " ", "@", ":", "plain text", "/"}
	for range 5000 {
		var text []byte
		for range r.IntN(20) {
			text = append(text, pieces[r.IntN(len(pieces))]...)
		}
		var want []byte
		for rest := text; len(rest) > 0; {
			n := bytes.IndexByte(rest, '\n') + 1
			if n == 0 {
				n = len(rest)
			}
			want = append(want, SanitizeLine(rest[:n])...)
			rest = rest[n:]
		}
		if got := SanitizeLines(text); !bytes.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("SanitizeLines(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestSanitizeLinesPerLine(t *testing.T) {
	// The userinfo pattern must not reach over a newline into the next
	// line's "@" (the reference sanitises line by line).
	in := "see ://user:\npass@host\nhttp://u:p@h/x\n"
	want := "see ://user:\npass@host\nhttp://h/x\n"
	if got := string(SanitizeLines([]byte(in))); got != want {
		t.Errorf("SanitizeLines = %q, want %q", got, want)
	}
}

// maskAll runs text through a masker in the given pieces.
func maskAll(secrets []string, pieces [][]byte) string {
	var m secretMasker
	for _, s := range secrets {
		m.add([]byte(s))
	}
	var out []byte
	for _, p := range pieces {
		out = m.mask(out, p, false)
	}
	return string(m.mask(out, nil, true))
}

func TestSecretMasker(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"none", nil, "token abc", "token abc"},
		{"one", []string{"s3cr3t"}, "a s3cr3t b s3cr3t", "a <redacted> b <redacted>"},
		{"overlapping occurrences merge", []string{"aba"}, "xababay", "x<redacted>y"},
		{"two overlapping secrets merge", []string{"abc", "cde"}, "abcde", "<redacted>"},
		{"adjacent stay separate", []string{"ab"}, "abab", "<redacted><redacted>"},
		{"prefix at end flushed", []string{"secret"}, "the secr", "the secr"},
		{"multi-line secret", []string{"line1\nline2"}, "x line1\nline2 y", "x <redacted> y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every way of cutting the input in two, and byte by byte.
			if got := maskAll(tt.secrets, [][]byte{[]byte(tt.in)}); got != tt.want {
				t.Errorf("whole: got %q, want %q", got, tt.want)
			}
			for i := 0; i <= len(tt.in); i++ {
				got := maskAll(tt.secrets, [][]byte{[]byte(tt.in[:i]), []byte(tt.in[i:])})
				if got != tt.want {
					t.Errorf("split at %d: got %q, want %q", i, got, tt.want)
				}
			}
			var bytewise [][]byte
			for i := range len(tt.in) {
				bytewise = append(bytewise, []byte{tt.in[i]})
			}
			if got := maskAll(tt.secrets, bytewise); got != tt.want {
				t.Errorf("byte by byte: got %q, want %q", got, tt.want)
			}
		})
	}
}

// randomSplits cuts b into random pieces.
func randomSplits(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(min(len(b), 1+r.IntN(40)))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// TestSecretMaskerRandomSplits is the property: whatever the split, the
// output is the one-shot output and no secret survives.
func TestSecretMaskerRandomSplits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abc:/@ \n"
	word := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for i := range 3000 {
		secrets := []string{word(2 + r.IntN(6))}
		if r.IntN(2) == 0 {
			secrets = append(secrets, word(2+r.IntN(6)))
		}
		var in strings.Builder
		for range r.IntN(12) {
			in.WriteString(word(r.IntN(6)))
			if r.IntN(2) == 0 {
				in.WriteString(secrets[r.IntN(len(secrets))])
			}
		}
		text := []byte(in.String())
		want := maskAll(secrets, [][]byte{text})
		got := maskAll(secrets, randomSplits(r, text))
		if got != want {
			t.Fatalf("case %d: secrets %q input %q: split output %q, one-shot %q", i, secrets, text, got, want)
		}
		for _, s := range secrets {
			if survives(got, s) {
				t.Fatalf("case %d: secret %q survived in %q (input %q)", i, s, got, text)
			}
		}
	}
}

func FuzzSanitizeLine(f *testing.F) {
	f.Add([]byte("Setting up http://buildd:secret@host\n"))
	f.Add([]byte("x,proxyauth=user:blah"))
	f.Add([]byte("://:@://a:b@c"))
	f.Fuzz(func(t *testing.T, line []byte) {
		out := SanitizeLine(line)
		if len(out) > len(line) {
			t.Fatalf("sanitising grew %q to %q", line, out)
		}
		if credentialLeft(out) {
			t.Fatalf("a URL credential survived in %q", out)
		}
		if i := bytes.IndexByte(line, '\n'); i < 0 || i == len(line)-1 {
			if got := SanitizeLines(line); !bytes.Equal(got, out) {
				t.Fatalf("SanitizeLines(%q) = %q, SanitizeLine = %q", line, got, out)
			}
		}
	})
}

// FuzzSecretMasker: no panic, split-invariance and no surviving secret.
func FuzzSecretMasker(f *testing.F) {
	f.Add("s3cr3t", "ab", "a s3cr3t b", uint64(1))
	f.Add("aba", "bab", "abababab", uint64(7))
	f.Fuzz(func(t *testing.T, s1, s2, text string, seed uint64) {
		if len(text) > 4096 || len(s1) > 64 || len(s2) > 64 {
			return
		}
		secrets := []string{s1, s2}
		want := maskAll(secrets, [][]byte{[]byte(text)})
		r := rand.New(rand.NewPCG(seed, seed>>1))
		got := maskAll(secrets, randomSplits(r, []byte(text)))
		if got != want {
			t.Fatalf("split output %q, one-shot %q", got, want)
		}
		for _, s := range secrets {
			// The marker's own characters could spell a secret with "<" or ">".
			if s != "" && !strings.ContainsAny(s, "<>\x00") && survives(got, s) {
				t.Fatalf("secret %q survived in %q", s, got)
			}
		}
	})
}

// survives reports whether secret s is in out outside the markers.
func survives(out, s string) bool {
	return strings.Contains(strings.ReplaceAll(out, redactedText, "\x00"), s)
}

// pythonSanitiser runs launchpad-buildd's _sanitizeURLs over bytes (lpbuildd/
// builder.py) line by line ("\n"), as its sanitizeBuildlog does, on
// hex-encoded text, and prints two results: the reference's, and the
// reference's two regular expressions applied the way this package
// applies them (the URL rule until nothing changes, proxyauth, the URL
// rule again); then 1 if the reference's URL rule leaves a credential it
// did not see (one inside the rest of a URL it already matched).
const pythonSanitiser = `
import binascii, re, sys
password_re = re.compile(rb"://([^:@/]*:[^:@/]+@)(\S+)")
proxyauth_re = re.compile(rb",proxyauth=[^:]+:[A-Za-z0-9-]+")
def reference(b):
    b = password_re.sub(rb"://\2", b)
    return proxyauth_re.sub(b"", b)
def url_fixpoint(b):
    while True:
        n = password_re.sub(rb"://\2", b)
        if n == b:
            return b
        b = n
def fixpoint(b):
    return url_fixpoint(proxyauth_re.sub(b"", url_fixpoint(b)))
for line in sys.stdin:
    b = binascii.unhexlify(line.strip())
    ref = b"\n".join(reference(l) for l in b.split(b"\n"))
    fix = b"\n".join(fixpoint(l) for l in b.split(b"\n"))
    nested = any(password_re.search(password_re.sub(rb"://\2", l)) for l in b.split(b"\n"))
    sys.stdout.write(binascii.hexlify(ref).decode() + " " + binascii.hexlify(fix).decode() + " " + str(int(nested)) + "\n")
`

// credentialLeft reports whether a line of out still holds a URL
// credential by the reference's own pattern.
func credentialLeft(out []byte) bool {
	for _, l := range bytes.Split(out, []byte("\n")) {
		if urlCredentialRE.Match(l) {
			return true
		}
	}
	return false
}

// urlCredentialRE is the reference's rule 1 (Python's bytes \S spelt out).
var urlCredentialRE = regexp.MustCompile(`://([^:@/]*:[^:@/]+@)([^ \t\n\r\f\v]+)`)

// TestSanitizeLineMatchesPython runs the reference's own regular
// expressions in the real Python on random text and compares: ours is the
// fixpoint form, never leaves a URL credential, and equals the reference
// on every line where the reference leaves none (and its URL rule saw
// every one: its proxyauth rule can remove what is left of one).
func TestSanitizeLineMatchesPython(t *testing.T) {
	py := testenv.RequireCommand(t, "python3")
	r := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"://", ":", "@", "/", " ", "\t", "\v", "\r", "\f", ",proxyauth=", "u", "pw", "host", "-", "\xff", "é", "a1", "http", "\x00", "\x1c", "\x85", "\xa0", "\n", ",", "://u:pw@", "c:d@", ",proxyauth=u:"}
	var lines [][]byte
	for range 6000 {
		var b []byte
		for range r.IntN(16) {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		lines = append(lines, b)
	}
	var in bytes.Buffer
	for _, l := range lines {
		in.WriteString(hex.EncodeToString(l) + "\n")
	}
	cmd := exec.Command(py, "-c", pythonSanitiser)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(got) != len(lines) {
		t.Fatalf("python3 returned %d lines for %d", len(got), len(lines))
	}
	differ, refLeaks := 0, 0
	for i, l := range lines {
		f := strings.Split(got[i], " ")
		if len(f) != 3 {
			t.Fatalf("python3 line %q", got[i])
		}
		refHex, fixHex, nested := f[0], f[1], f[2] == "1"
		ref, _ := hex.DecodeString(refHex)
		fix, _ := hex.DecodeString(fixHex)
		ours := SanitizeLines(l)
		if !bytes.Equal(ours, fix) {
			t.Errorf("line %q: ours %q, Python fixpoint %q", l, ours, fix)
		}
		if credentialLeft(ours) {
			t.Errorf("line %q: ours %q still holds a URL credential", l, ours)
		}
		leaky := nested || credentialLeft(ref)
		if leaky {
			refLeaks++
		}
		if !leaky && !bytes.Equal(ours, ref) {
			t.Errorf("line %q: ours %q, reference %q", l, ours, ref)
		}
		if !bytes.Equal(ours, ref) {
			differ++
		}
	}
	t.Logf("%d of %d random lines differ from the reference; it leaves a URL credential in %d", differ, len(lines), refLeaks)
}
