package vcs

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

func TestResolve(t *testing.T) {
	h1 := plumbing.NewHash("1111111111111111111111111111111111111111")
	h2 := plumbing.NewHash("2222222222222222222222222222222222222222")
	refs := func(rs ...*plumbing.Reference) map[plumbing.ReferenceName]*plumbing.Reference {
		m := map[plumbing.ReferenceName]*plumbing.Reference{}
		for _, r := range rs {
			m[r.Name()] = r
		}
		return m
	}
	std := refs(
		plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main"),
		plumbing.NewHashReference("refs/heads/main", h1),
		plumbing.NewHashReference("refs/heads/both", h1),
		plumbing.NewHashReference("refs/tags/both", h2),
		plumbing.NewHashReference("refs/tags/1.0", h2),
		plumbing.NewHashReference("refs/pull/1/head", h2),
	)
	tests := []struct {
		path string
		refs map[plumbing.ReferenceName]*plumbing.Reference
		want want
		err  error
	}{
		{"", std, want{kind: kindBranch, ref: "refs/heads/main"}, nil},
		{"HEAD", std, want{kind: kindBranch, ref: "refs/heads/main"}, nil},
		{"main", std, want{kind: kindBranch, ref: "refs/heads/main"}, nil},
		{"refs/heads/main", std, want{kind: kindBranch, ref: "refs/heads/main"}, nil},
		{"1.0", std, want{kind: kindTag, ref: "refs/tags/1.0"}, nil},
		{"refs/tags/1.0", std, want{kind: kindTag, ref: "refs/tags/1.0"}, nil},
		{"both", std, want{kind: kindBranch, ref: "refs/heads/both"}, nil},
		{"refs/tags/both", std, want{kind: kindTag, ref: "refs/tags/both"}, nil},
		{h2.String(), std, want{kind: kindCommit, hash: h2}, nil},
		{strings.ToUpper(h2.String()), std, want{kind: kindCommit, hash: h2}, nil},
		{"nope", std, want{}, ErrUnknownRef},
		{"refs/heads/nope", std, want{}, ErrUnknownRef},
		{"refs/pull/1/head", std, want{}, ErrUnknownRef},
		{"1111111", std, want{}, ErrUnknownRef},
		{"main:evil", std, want{}, ErrUnknownRef},
		// Detached HEAD on the server: the branch at the same commit, else the commit.
		{"", refs(plumbing.NewHashReference(plumbing.HEAD, h1), plumbing.NewHashReference("refs/heads/x", h1)), want{kind: kindBranch, ref: "refs/heads/x"}, nil},
		{"", refs(plumbing.NewHashReference(plumbing.HEAD, h1), plumbing.NewHashReference("refs/heads/x", h2)), want{kind: kindCommit, hash: h1}, nil},
		// HEAD at an unborn branch, or no HEAD.
		{"", refs(plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/master"), plumbing.NewHashReference("refs/heads/main", h1)), want{}, ErrUnknownRef},
		{"", refs(plumbing.NewHashReference("refs/heads/main", h1)), want{}, ErrUnknownRef},
	}
	for _, tc := range tests {
		got, err := resolve(tc.path, tc.refs)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("resolve(%q) = %v, %v; want %v, %v", tc.path, got, err, tc.want, tc.err)
		}
	}
}

func TestResolveSubmoduleURL(t *testing.T) {
	tests := []struct{ super, rel, want string }{
		{"https://h/app.git", "../lib.git", "https://h/lib.git"},
		{"https://h/app.git/", "../lib.git", "https://h/lib.git"},
		{"https://h/group/app", "../lib", "https://h/group/lib"},
		{"https://h/group/app", "../../other/lib", "https://h/other/lib"},
		{"https://h/app.git", "./sub", "https://h/app.git/sub"},
		{"https://u:p@h/app.git", "../lib.git", "https://u:p@h/lib.git"},
		{"git://h:9418/a/b.git", ".././../c.git", "git://h:9418/c.git"},
		{"https://h/app.git", "https://other/x.git", "https://other/x.git"},
		{"https://h/app.git", "../../x", ""},
		{"https://h/", "../x", ""},
		{"not-a-url", "../x", ""},
	}
	for _, tc := range tests {
		got, err := resolveSubmoduleURL(tc.super, tc.rel)
		if tc.want == "" {
			if err == nil {
				t.Errorf("resolveSubmoduleURL(%q, %q) = %q, want an error", tc.super, tc.rel, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolveSubmoduleURL(%q, %q) = %q, %v; want %q", tc.super, tc.rel, got, err, tc.want)
		}
	}
}

func TestSanitize(t *testing.T) {
	s := &sanitizer{}
	s.addURL("https://builder:t0k%2Fen@git.example.com/x.git")
	s.addURL("http://proxyuser:pr0xy@10.0.0.1:3128")
	for _, in := range []string{
		"cannot fetch https://builder:t0k%2Fen@git.example.com/x.git: oops",
		"proxy http://proxyuser:pr0xy@10.0.0.1:3128 said no",
		"go-git quoted the password t0k/en alone\nand a second line",
		"pr0xy in the middle",
	} {
		out := s.clean(in)
		for _, secret := range []string{"t0k/en", "t0k%2Fen", "pr0xy@", "pr0xy "} {
			if strings.Contains(out, secret) {
				t.Errorf("clean(%q) = %q keeps %q", in, out, secret)
			}
		}
		if strings.ContainsAny(out, "\n\r") {
			t.Errorf("clean(%q) = %q is not one line", in, out)
		}
	}
	if got := redactURL("https://u:p@h/x"); got != "https://h/x" {
		t.Errorf("redactURL = %q", got)
	}
}

func TestCleanSubmodulePath(t *testing.T) {
	for p, ok := range map[string]bool{
		"lib": true, "a/b/c": true, "lib/": true,
		"": false, "/abs": false, "../x": false, "a/../b": false, ".git/x": false, "a/.GIT": false, "a//b": false, "./a": false,
	} {
		if _, got := cleanSubmodulePath(p); got != ok {
			t.Errorf("cleanSubmodulePath(%q) ok = %v, want %v", p, got, ok)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://h/x.git": true, "http://h:8080/x": true, "git://h/x.git": true,
		"ssh://h/x": false, "git@h:x.git": false, "file:///x": false, "/srv/x.git": false,
		"ext::sh": false, "https:///x": false, "git+ssh://h/x": false, "": false,
	} {
		if err := checkURL(u); (err == nil) != ok {
			t.Errorf("checkURL(%q) = %v", u, err)
		}
	}
}

// Fuzz the parsers of untrusted input: .gitmodules URLs and git_path.
func FuzzResolveSubmoduleURL(f *testing.F) {
	f.Add("https://u:secret@h/app.git", "../lib.git")
	f.Add("git://h/a/b", "./../../c")
	f.Add("https://h/", "../../../x")
	f.Fuzz(func(t *testing.T, super, rel string) {
		got, err := resolveSubmoduleURL(super, rel)
		if err != nil {
			return
		}
		// A relative URL never climbs above the superproject's host.
		if (strings.HasPrefix(rel, "./") || strings.HasPrefix(rel, "../")) && strings.Contains(super, "://") {
			i := strings.Index(super, "://") + 3
			host := super[i:]
			if j := strings.IndexByte(host, '/'); j >= 0 {
				host = host[:j]
			}
			if !strings.HasPrefix(got, super[:i]+host) {
				t.Errorf("resolveSubmoduleURL(%q, %q) = %q left the host", super, rel, got)
			}
		}
	})
}

func FuzzResolve(f *testing.F) {
	f.Add("main")
	f.Add("refs/tags/1.0")
	f.Add("1111111111111111111111111111111111111111")
	f.Add("refs/heads/../../x")
	refs := map[plumbing.ReferenceName]*plumbing.Reference{
		plumbing.HEAD:     plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main"),
		"refs/heads/main": plumbing.NewHashReference("refs/heads/main", plumbing.NewHash("1111111111111111111111111111111111111111")),
		"refs/tags/1.0":   plumbing.NewHashReference("refs/tags/1.0", plumbing.NewHash("2222222222222222222222222222222222222222")),
	}
	f.Fuzz(func(t *testing.T, path string) {
		w, err := resolve(path, refs)
		if err != nil {
			if !errors.Is(err, ErrUnknownRef) {
				t.Errorf("resolve(%q): unclassified error %v", path, err)
			}
			return
		}
		// Only refs the server advertised, or a full SHA, come out.
		if w.kind != kindCommit && refs[w.ref] == nil {
			t.Errorf("resolve(%q) = %v, not an advertised ref", path, w)
		}
	})
}

func FuzzSanitize(f *testing.F) {
	f.Add("https://user:hunter22@host/x.git", "cannot fetch https://user:hunter22@host/x.git: hunter22")
	f.Fuzz(func(t *testing.T, rawURL, msg string) {
		s := &sanitizer{}
		s.addURL(rawURL)
		out := s.clean(msg)
		if strings.ContainsAny(out, "\n\r") {
			t.Errorf("clean(%q) = %q is not one line", msg, out)
		}
		for _, sec := range s.secrets {
			if strings.Contains(out, sec) && !strings.Contains(sec, "<redacted>") && !strings.Contains("<redacted>", sec) {
				t.Errorf("clean(%q) = %q keeps secret %q", msg, out, sec)
			}
		}
	})
}
