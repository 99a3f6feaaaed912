package debian

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; these f.Add calls cover
// the basics so that `go test` alone exercises every fuzzer.

func FuzzCompareVersions(f *testing.F) {
	for _, s := range [][3]string{
		{"1.0", "1.0~rc1", "1:0.9"}, {"1.0-1", "1.0-1ubuntu1", "1.0+b1"}, {"~", "", "0"},
		{"a:1", "1:a", "01:1"}, {"1.0a", "1.0+", "1.0."}, {"99999999999999999999", "1-1-1", "-"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("CompareVersions(%q, %q) = %d but (%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("CompareVersions(%q, %q) != 0", a, a)
		}
		bc, ac := CompareVersions(b, c), CompareVersions(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("not transitive: %q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
		if ab == 0 && bc == 0 && ac != 0 {
			t.Fatalf("equality not transitive: %q = %q = %q but %q != %q", a, b, c, a, c)
		}
		_ = ValidVersion(a)
	})
}

func FuzzParseRelations(f *testing.F) {
	for _, s := range []string{
		"foo", "debhelper (>= 9~), bar | baz", "ebadver:any (>= 3.0)", "foo [!amd64 linux-any] <!nocheck> <stage1 cross>",
		"foo (<< 1) | bar (>= 2)", "  a(=1)[i386]<x>,\n b:native  ,", "(weird", "foo [ ]", "foo <>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRelations(s)
		if err != nil {
			return
		}
		out := r.String()
		r2, err := ParseRelations(out)
		if err != nil {
			t.Fatalf("ParseRelations(%q) -> %q does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(r, r2) || r2.String() != out {
			t.Fatalf("round trip of %q: %#v -> %q -> %#v", s, r, out, r2)
		}
		stripped := r.Strip().String()
		if r3, err := ParseRelations(stripped); err != nil || r3.String() != stripped {
			t.Fatalf("stripped %q does not round-trip: %v", stripped, err)
		}
	})
}

// formatControl writes paragraphs back as deb822.
func formatControl(paras []Paragraph) string {
	var b strings.Builder
	for i, p := range paras {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, f := range p {
			b.WriteString(f.Name + ": " + f.Value + "\n")
		}
	}
	return b.String()
}

func FuzzParseControl(f *testing.F) {
	for _, s := range []string{
		"Package: foo\nVersion: 1.0\n\nPackage: bar\nDescription: x\n y\n .\n",
		signedDsc, goodChanges, "# c\n\n\nA:b\n\tc\n", "-----BEGIN PGP SIGNED MESSAGE-----\n\nA: b\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n",
		" x\n", "A\n", "A: b\na: c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		paras, err := ParseControl(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, p := range paras {
			if len(p) == 0 {
				t.Fatal("empty paragraph")
			}
		}
		text := formatControl(paras)
		again, err := ParseControl(strings.NewReader(text))
		if err != nil {
			t.Fatalf("reformatted %q does not parse: %v", text, err)
		}
		if !reflect.DeepEqual(paras, again) {
			t.Fatalf("round trip: %q -> %q -> %q", paras, text, again)
		}
		_, _ = ParseDsc(bytes.NewReader(data))
	})
}

func FuzzParseChanges(f *testing.F) {
	for _, s := range []string{
		goodChanges, "Files:\n 31b5f26bb600b7c112831ee6d140e96a 1 misc optional ../x\n",
		"Files:\n 31b5f26bb600b7c112831ee6d140e96a 1 misc optional a.deb\nChecksums-Sha256:\n " + strings.Repeat("0", 64) + " 1 a.deb\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseChanges(bytes.NewReader(data))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, fl := range c.Files {
			if err := CheckFileName(fl.Name); err != nil || seen[fl.Name] || fl.Size < 0 || len(fl.Hash) != 32 {
				t.Fatalf("accepted bad entry %+v (%v)", fl, err)
			}
			seen[fl.Name] = true
		}
		for _, fl := range c.ChecksumsSha256 {
			if err := CheckFileName(fl.Name); err != nil || fl.Size < 0 || len(fl.Hash) != 64 {
				t.Fatalf("accepted bad sha256 entry %+v (%v)", fl, err)
			}
		}
	})
}

func FuzzImplicitPointerFilter(f *testing.F) {
	for _, s := range []string{
		problemLog, "Innocuous build log\nwith no errors\n\x80\x81\x82\n",
		"a.c:1: warning: implicit declaration of function 'f'\na.c:1: warning: return makes pointer from integer without a cast",
		"a.c:007:3: warning: implicit declaration of function `f'\na.c:7:9: warning: cast to pointer from integer of different size\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		step := int(chunk%64) + 1
		for _, inline := range []bool{true, false} {
			var whole, parts bytes.Buffer
			fw := NewImplicitPointerFilter(&whole, inline)
			fw.Write(data)
			if err := fw.Close(); err != nil {
				t.Fatal(err)
			}
			fp := NewImplicitPointerFilter(&parts, inline)
			for rest := data; len(rest) > 0; {
				n := min(step, len(rest))
				fp.Write(rest[:n])
				rest = rest[n:]
			}
			if err := fp.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(whole.Bytes(), parts.Bytes()) || fw.Problems() != fp.Problems() {
				t.Fatalf("chunking by %d changes the output: %q vs %q", step, whole.Bytes(), parts.Bytes())
			}
			switch {
			case inline && !bytes.HasPrefix(whole.Bytes(), dataWithoutProblemLines(data, fw.Problems())):
				t.Fatalf("output does not start with the input")
			case fw.Problems() == 0 && inline && !bytes.Equal(whole.Bytes(), data):
				t.Fatalf("no problems but output %q != input %q", whole.Bytes(), data)
			case fw.Problems() == 0 && !inline && whole.Len() != 0:
				t.Fatalf("no problems but out-of-line output %q", whole.Bytes())
			}
		}
	})
}

// dataWithoutProblemLines returns the prefix of data that must appear
// unchanged at the start of the output: all of it when there are no
// problems, else up to the first problem line's insertion (checked
// cheaply: the first line).
func dataWithoutProblemLines(data []byte, problems int) []byte {
	if problems == 0 {
		return data
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return data[:i+1]
	}
	return data
}

func FuzzAnalyseSbuild(f *testing.F) {
	f.Add([]byte(depFailLog("ebadver:any (>= 3.0) but 2.0 is installed")), "foo")
	f.Add([]byte(depFailLog("foo but it is not going to be installed")), "foo (>= 2) [amd64], bar <!nocheck>")
	f.Add([]byte("E: There are problems and -y was used without --force-yes\n"), "")
	f.Fuzz(func(t *testing.T, log []byte, deps string) {
		buildDeps := func() (Relations, error) { return ParseRelations(deps) }
		av := func() (*Available, error) {
			return AvailablePackages(strings.NewReader("Package: foo\nVersion: 1\nProvides: bar\n"))
		}
		a := AnalyseSbuild(3, bytes.NewReader(log), int64(len(log)), buildDeps, av, "amd64")
		switch a.Status {
		case StatusDepFail:
			if _, err := ParseRelations(a.Dependencies); err != nil || a.Dependencies == "" {
				t.Fatalf("DEPFAIL with bad dependencies %q: %v", a.Dependencies, err)
			}
		case StatusGivenBack, StatusPackageFail:
			if a.Dependencies != "" {
				t.Fatalf("%s with dependencies %q", a.Status, a.Dependencies)
			}
		default:
			t.Fatalf("status %q for exit 3", a.Status)
		}
	})
}
