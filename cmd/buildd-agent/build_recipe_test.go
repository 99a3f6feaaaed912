package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildTranslationTemplatesUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		f    localTranslationFlags
		want string
	}{
		{localTranslationFlags{}, "give one of --git-repository and --branch"},
		{localTranslationFlags{gitRepository: "https://x/y.git", branch: "lp:y"}, "give one of --git-repository and --branch"},
		{localTranslationFlags{gitRepository: "https://x/y.git"}, "--chroot is required"},
		{localTranslationFlags{branch: "lp:y", chroot: "/nonexistent/chroot.tar.gz"}, "cannot read --chroot"},
		{localTranslationFlags{branch: "file:///etc", chroot: os.Args[0]}, `invalid build argument "branch"`},
	} {
		tc.f.series = "noble"
		_, err := runLocalTranslationTemplates(t.Context(), tc.f, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestBuildRecipeUsageErrors(t *testing.T) {
	recipe := filepath.Join(t.TempDir(), "recipe")
	os.WriteFile(recipe, []byte("# git-build-recipe format 0.4 deb-version 1\nhttps://x/y.git main\n"), 0o644)
	for _, tc := range []struct {
		f    localRecipeFlags
		want string
	}{
		{localRecipeFlags{}, "--recipe is required"},
		{localRecipeFlags{recipe: "/nonexistent/recipe"}, "cannot read --recipe"},
		{localRecipeFlags{recipe: recipe}, "--chroot is required"},
		{localRecipeFlags{recipe: recipe, chroot: os.Args[0], suite: "a b"}, `invalid build argument "suite"`},
	} {
		tc.f.series, tc.f.component, tc.f.purpose, tc.f.authorName, tc.f.authorEmail = "noble", "universe", "PPA", "n", "e@x"
		_, err := runLocalRecipe(t.Context(), tc.f, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.f, err, tc.want)
		}
	}
}
