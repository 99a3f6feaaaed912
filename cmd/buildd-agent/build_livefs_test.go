package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildLiveFSUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		f    localLiveFSFlags
		want string
	}{
		{localLiveFSFlags{}, "--project is required"},
		{localLiveFSFlags{project: "ubuntu"}, "--chroot is required"},
		{localLiveFSFlags{project: "ubuntu", chroot: "/nonexistent/chroot.tar.gz"}, "cannot read --chroot"},
		{localLiveFSFlags{project: "ubuntu", chroot: os.Args[0], locale: "-x"}, `invalid build argument "locale"`},
	} {
		tc.f.series, tc.f.pocket = "noble", "release"
		_, err := runLocalLiveFS(t.Context(), tc.f, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestBuildLiveFSArgs(t *testing.T) {
	got := liveFSBuildArgs(localLiveFSFlags{series: "noble", project: "ubuntu-cpc", pocket: "proposed",
		datestamp: "20250101-000000", cohortKey: "K", extraPPAs: []string{"a/b"}}, "amd64")
	want := map[string]any{"series": "noble", "arch_tag": "amd64", "project": "ubuntu-cpc", "pocket": "proposed",
		"datestamp": "20250101-000000", "cohort-key": "K", "extra_ppas": []any{"a/b"}, "debug": false, "fast_cleanup": false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}
