package agent

import "testing"

// ensurepresent tells Options.Prepare of every file it has, and of no other.
func TestEnsurePresentPrepares(t *testing.T) {
	tb := newTestBuilder(t, 0)
	var got [][2]string
	tb.prepare = func(sum, path string) { got = append(got, [2]string{sum, path}) }
	if _, err := tb.rpc("ensurepresent", tb.chroot, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	missing := sumOf([]byte("not there"))
	if _, err := tb.rpc("ensurepresent", missing, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != [2]string{tb.chroot, tb.cache.Path(tb.chroot)} {
		t.Errorf("prepared %q", got)
	}
}
