package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
	"github.com/google/go-cmp/cmp"
)

func faultOf(t *testing.T, err error) *Fault {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("error %v is not a Fault", err)
	}
	return f
}

func wantFault(t *testing.T, v any, err error, code int, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got %#v, want fault %d %q", v, code, contains)
	}
	f := faultOf(t, err)
	if f.Code != code || !strings.Contains(f.String, contains) {
		t.Fatalf("got fault %d %q, want %d containing %q", f.Code, f.String, code, contains)
	}
}

var seriesArgs = map[string]any{"series": "noble"}

// gatedManager is a manager the test steps through: it writes a line,
// stores results, sets revision_id, then waits for release (or, unless
// stubborn, for cancellation) and returns result.
type gatedManager struct {
	started  chan *builders.Env
	release  chan builders.Result
	stubborn bool
	useTgt   bool
	results  map[string]string // name → contents
}

func newGated() *gatedManager {
	return &gatedManager{started: make(chan *builders.Env, 1), release: make(chan builders.Result, 1)}
}

func (g *gatedManager) manager(req builders.Request) *funcManager {
	return &funcManager{endpoint: "http://proxy/revoke/" + req.BuildID, run: func(ctx context.Context, env *builders.Env) builders.Result {
		fmt.Fprintf(env.Log, "building %s\n", req.BuildID)
		if g.useTgt {
			if _, err := env.NewTarget(ctx, "fake", target.Spec{BuildID: req.BuildID}); err != nil {
				fmt.Fprintf(env.Log, "no target: %v\n", err)
				return builders.Result{Status: builders.BuildBuilderFail}
			}
		}
		for _, name := range sortedNames(g.results) {
			if _, err := env.AddWaitingFile(name, strings.NewReader(g.results[name])); err != nil {
				panic(err)
			}
		}
		env.SetStatus("revision_id", "0123abcd")
		g.started <- env
		if g.stubborn {
			return <-g.release
		}
		select {
		case r := <-g.release:
			return r
		case <-ctx.Done():
			fmt.Fprintln(env.Log, "cancelled")
			return builders.Result{Status: builders.BuildPackageFail}
		}
	}}
}

func sortedNames(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func TestInfoAndEcho(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	registerManager(t, "zz-fake", newGated().manager)
	v, err := tb.rpc("info")
	if err != nil {
		t.Fatal(err)
	}
	tags := []any{}
	for _, tag := range builders.Tags() {
		tags = append(tags, tag)
	}
	if diff := cmp.Diff([]any{"1.0", "amd64", tags}, v); diff != "" {
		t.Errorf("info (-want +got):\n%s", diff)
	}
	if !strings.Contains(fmt.Sprint(v), "zz-fake") {
		t.Errorf("info does not list the registered tag: %v", v)
	}
	v, err = tb.rpc("echo", "Hello World", int64(1), nil)
	if err != nil || !cmp.Equal(v, []any{"Hello World", int64(1), nil}) {
		t.Errorf("echo = %#v, %v", v, err)
	}
}

func TestStatusIdle(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	pre := tb.status
	_ = pre
	v, _ := tb.methods()["status"](nil, []any{})
	want := "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n" +
		"<member>\n<name>builder_status</name>\n<value><string>BuilderStatus.IDLE</string></value>\n</member>\n" +
		"<member>\n<name>builder_version</name>\n<value><string>" + Version + "</string></value>\n</member>\n" +
		"</struct></value>\n</param>\n</params>\n</methodResponse>\n"
	if string(v.(preEncoded)) != want {
		t.Errorf("IDLE status = %q, want %q", v, want)
	}
}

func TestBuildLifecycle(t *testing.T) {
	results := []struct {
		result     builders.Result
		hasFilemap bool
	}{
		{builders.Result{Status: builders.BuildOK}, true},
		{builders.Result{Status: builders.BuildPackageFail}, true},
		{builders.Result{Status: builders.BuildDepFail, Dependencies: "libfoo (>= 1)"}, true},
		{builders.Result{Status: builders.BuildGivenBack}, false},
		{builders.Result{Status: builders.BuildChrootFail}, false},
		{builders.Result{Status: builders.BuildBuilderFail}, false},
		{builders.Result{Status: "BuildStatus.BOGUS"}, false},
	}
	for _, tt := range results {
		t.Run(string(tt.result.Status), func(t *testing.T) {
			tb := newTestBuilder(t, time.Second)
			g := newGated()
			// Two results with the same contents: clean() must tolerate the duplicate SHA-1.
			g.results = map[string]string{"a.snap": "same", "b.snap": "same", "c.txt": "other"}
			registerManager(t, "fake", g.manager)
			input := tb.cache.put([]byte("source"))
			args := map[string]any{"series": "noble", "build_url": "https://launchpad.test/build/1"}
			v, err := tb.rpc("build", "SNAPBUILD-1", "fake", tb.chroot, map[string]any{"x.dsc": input}, args)
			if err != nil || !cmp.Equal(v, []any{"BuilderStatus.BUILDING", "SNAPBUILD-1"}) {
				t.Fatalf("build = %#v, %v", v, err)
			}
			<-g.started
			st := tb.status(t)
			// The build URL, then builder-prep's two lines (kernel,
			// toolchain), then the manager's output.
			var prep bytes.Buffer
			writeBuilderPrep(&prep)
			want := map[string]any{
				"builder_status": "BuilderStatus.BUILDING", "builder_version": Version,
				"build_id": "SNAPBUILD-1", "revision_id": "0123abcd",
				// The log is "https://…\n<prep>building SNAPBUILD-1\n": the first line is dropped.
				"logtail": []byte(prep.String() + "building SNAPBUILD-1"),
			}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("BUILDING status (-want +got):\n%s", diff)
			}
			if got := tb.log.String(); got != "https://launchpad.test/build/1\n"+prep.String()+"building SNAPBUILD-1\n" {
				t.Errorf("build log = %q", got)
			}
			if _, err := tb.rpc("clean"); err == nil {
				t.Error("clean while BUILDING succeeded")
			}
			g.release <- tt.result
			tb.waitState(t, BuilderWaiting)
			st = tb.status(t)
			wantStatus := string(tt.result.Status)
			if tt.result.Status == "BuildStatus.BOGUS" {
				wantStatus = string(builders.BuildBuilderFail)
			}
			want = map[string]any{
				"builder_status": "BuilderStatus.WAITING", "builder_version": Version,
				"build_id": "SNAPBUILD-1", "build_status": wantStatus, "revision_id": "0123abcd",
			}
			if tt.hasFilemap {
				want["filemap"] = map[string]any{"a.snap": sumOf([]byte("same")), "b.snap": sumOf([]byte("same")), "c.txt": sumOf([]byte("other"))}
				want["dependencies"] = tt.result.Dependencies
			}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("WAITING status (-want +got):\n%s", diff)
			}
			v, err = tb.rpc("clean")
			if err != nil || v != "BuilderStatus.IDLE" {
				t.Fatalf("clean = %#v, %v", v, err)
			}
			if diff := cmp.Diff([]string{sumOf([]byte("same")), sumOf([]byte("other"))}, tb.cache.removed); diff != "" {
				t.Errorf("removed results (-want +got):\n%s", diff)
			}
			if !tb.cache.Has(input) || !tb.cache.Has(tb.chroot) {
				t.Error("clean removed inputs")
			}
			if tb.log.removed != 1 {
				t.Errorf("log removed %d times", tb.log.removed)
			}
			if st := tb.status(t); st["builder_status"] != BuilderIdle || len(st) != 2 {
				t.Errorf("status after clean = %v", st)
			}
			if _, err := tb.rpc("clean"); err == nil {
				t.Error("second clean succeeded")
			}
		})
	}
}

func TestBuildValidationOrder(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	registerManager(t, "fake", newGated().manager)
	missing := strings.Repeat("0", 40)
	present := tb.cache.put([]byte("file"))
	var tagList []string
	for _, tag := range builders.Tags() {
		tagList = append(tagList, "'"+tag+"'")
	}
	unknownBuilder := []any{"BuilderStatus.UNKNOWNBUILDER", "nonexistentbuilder not in [" + strings.Join(tagList, ", ") + "]"}
	chrootSum := []any{"BuilderStatus.UNKNOWNSUM", "CHROOTSUM -> " + missing + "\n" +
		"            ***** INFO *****\n            No URL\n            ****************\n            "}
	fileSum := []any{"BuilderStatus.UNKNOWNSUM", "FILESUM -> " + missing + "\n" +
		"                ***** INFO *****\n                No URL\n                ****************\n                "}
	tests := []struct {
		name                 string
		buildid, tag, chroot any
		files                map[string]any
		want                 any
		fault                string
	}{
		{"unknown tag first", "", "nonexistentbuilder", missing, map[string]any{"f": missing}, unknownBuilder, ""},
		{"chroot before files", nil, "fake", missing, map[string]any{"f": missing}, chrootSum, ""},
		{"files before build id", int64(0), "fake", tb.chroot, map[string]any{"a": present, "f": missing}, fileSum, ""},
		{"nil build id", nil, "fake", tb.chroot, map[string]any{"a": present}, nil, "parameter 1 (buildid) must be a non-empty string, got nil"},
		{"empty build id", "", "fake", tb.chroot, nil, nil, "got an empty string"},
		{"zero build id", int64(0), "fake", tb.chroot, nil, nil, "got int 0"},
		{"int build id", int64(7), "fake", tb.chroot, nil, nil, "got int 7"},
		{"traversal build id", "../x", "fake", tb.chroot, nil, nil, "not usable as a build id"},
		{"slash build id", "a/b", "fake", tb.chroot, nil, nil, "not usable as a build id"},
		{"dot build id", "..", "fake", tb.chroot, nil, nil, "not usable as a build id"},
		{"invalid chroot sum", "B-1", "fake", "../../etc/passwd", nil, []any{"BuilderStatus.UNKNOWNSUM", strings.Replace(chrootSum[1].(string), missing, "../../etc/passwd", 1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tt.files
			if files == nil {
				files = map[string]any{}
			}
			v, err := tb.rpc("build", tt.buildid, tt.tag, tt.chroot, files, seriesArgs)
			if tt.fault != "" {
				wantFault(t, v, err, 8002, tt.fault)
			} else if err != nil {
				t.Fatal(err)
			} else if diff := cmp.Diff(tt.want, v); diff != "" {
				t.Errorf("build (-want +got):\n%s", diff)
			}
			if tb.State() != BuilderIdle || tb.log.resets != 0 {
				t.Errorf("refused build changed the builder: %s, %d log resets", tb.State(), tb.log.resets)
			}
		})
	}
}

func TestBuildBadParams(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	registerManager(t, "fake", newGated().manager)
	c := tb.chroot
	tests := []struct {
		name   string
		params []any
		fault  string
	}{
		{"no params", nil, "build: takes 5 parameters (buildid, managertag, chrootsum, filemap, args), got 0"},
		{"too many", []any{"a", "fake", c, map[string]any{}, seriesArgs, "x"}, "takes 5 parameters"},
		{"tag int", []any{"a", int64(1), c, map[string]any{}, seriesArgs}, "parameter 2 (managertag) must be a string, got int"},
		{"chroot nil", []any{"a", "fake", nil, map[string]any{}, seriesArgs}, "parameter 3 (chrootsum) must be a string, got nil"},
		{"filemap array", []any{"a", "fake", c, []any{}, seriesArgs}, "parameter 4 (filemap) must be a struct, got array"},
		{"filemap value int", []any{"a", "fake", c, map[string]any{"x": int64(1)}, seriesArgs}, `entry "x" must be a string (a SHA-1), got int`},
		{"filemap traversal", []any{"a", "fake", c, map[string]any{"../../x": c}, seriesArgs}, `name "../../x" is not a plain file name`},
		{"filemap dotdot", []any{"a", "fake", c, map[string]any{"..": c}, seriesArgs}, `name ".." is not a file name`},
		{"filemap empty name", []any{"a", "fake", c, map[string]any{"": c}, seriesArgs}, `name "" is not a file name`},
		{"args nil", []any{"a", "fake", c, map[string]any{}, nil}, "parameter 5 (args) must be a struct, got nil"},
		{"args string", []any{"a", "fake", c, map[string]any{}, "x"}, "parameter 5 (args) must be a struct, got string"},
		{"factory arg error", []any{"a", "fake", c, map[string]any{}, map[string]any{"series": int64(1)}}, `build: invalid build argument "series": missing or not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tb.rpc("build", tt.params...)
			wantFault(t, v, err, 8002, tt.fault)
			if tb.State() != BuilderIdle || tb.log.resets != 0 {
				t.Errorf("refused build changed the builder: %s, %d log resets", tb.State(), tb.log.resets)
			}
		})
	}
}

func TestBadParamsOtherMethods(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	tests := []struct {
		method string
		params []any
		fault  string
	}{
		{"info", []any{"x"}, "info: takes no parameters, got 1"},
		{"status", []any{nil}, "status: takes no parameters, got 1"},
		{"abort", []any{int64(1)}, "abort: takes no parameters"},
		{"clean", []any{"x", "y"}, "clean: takes no parameters, got 2"},
		{"proxy_info", []any{"x"}, "proxy_info: takes no parameters"},
		{"ensurepresent", []any{"a", "b", "c"}, "ensurepresent: takes 4 parameters (sha1sum, url, username, password), got 3"},
		{"ensurepresent", []any{nil, nil, nil, nil}, "parameter 1 (sha1sum) must be a string, got nil"},
		{"ensurepresent", []any{"a", int64(1), nil, nil}, "ensurepresent: parameter 2 (url) must be a string or nil, got int"},
		{"ensurepresent", []any{"a", nil, []byte("u"), nil}, "parameter 3 (username) must be a string or nil, got base64"},
		{"ensurepresent", []any{"a", nil, nil, map[string]any{}}, "parameter 4 (password) must be a string or nil, got struct"},
		{"abort", nil, "abort: the builder is IDLE; only a BUILDING build can be aborted"},
		{"clean", nil, "clean: the builder is IDLE; only a WAITING builder can be cleaned"},
		{"proxy_info", nil, "proxy_info: the builder is IDLE"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.fault, func(t *testing.T) {
			v, err := tb.rpc(tt.method, tt.params...)
			wantFault(t, v, err, 8002, tt.fault)
		})
	}
}

func TestRPCEnsurePresent(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	tests := []struct {
		params []any
		want   []any
	}{
		{[]any{tb.chroot, nil, nil, nil}, []any{true, "Cache"}},
		{[]any{strings.Repeat("1", 40), nil, nil, nil}, []any{false, "No URL"}},
		{[]any{strings.Repeat("1", 40), "http://x/", "", ""}, []any{false, "Error accessing Librarian: fake"}},
	}
	for _, tt := range tests {
		v, err := tb.rpc("ensurepresent", tt.params...)
		if err != nil || !cmp.Equal(v, any(tt.want)) {
			t.Errorf("ensurepresent%v = %#v, %v; want %v", tt.params, v, err, tt.want)
		}
	}
}

// A download holds no builder lock: status, build and abort answer while
// ensurepresent is blocked.
func TestRPCEnsurePresentDoesNotBlock(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	tb.cache.ensureGate = make(chan struct{})
	tb.cache.ensureIn = make(chan struct{}, 1)
	done := make(chan any)
	go func() {
		v, _ := tb.rpc("ensurepresent", strings.Repeat("2", 40), "http://x/", "", "")
		done <- v
	}()
	<-tb.cache.ensureIn
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	<-g.started
	if st := tb.status(t); st["builder_status"] != BuilderBuilding {
		t.Errorf("status = %v", st)
	}
	if _, err := tb.rpc("abort"); err != nil {
		t.Fatal(err)
	}
	tb.waitState(t, BuilderWaiting)
	close(tb.cache.ensureGate)
	if v := <-done; !cmp.Equal(v, any([]any{false, "Error accessing Librarian: fake"})) {
		t.Errorf("ensurepresent = %v", v)
	}
}

func TestBuildWhileBusyChangesNothing(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	<-g.started
	logBefore := tb.log.String()
	for _, state := range []string{BuilderBuilding, BuilderWaiting} {
		v, err := tb.rpc("build", "B-2", "fake", tb.chroot, map[string]any{}, seriesArgs)
		wantFault(t, v, err, 8002, "build: the builder is "+shortState(state)+", not IDLE")
		if st := tb.status(t); st["build_id"] != "B-1" || st["builder_status"] != state {
			t.Errorf("status after refused build = %v", st)
		}
		if tb.log.resets != 1 || tb.log.String() != logBefore {
			t.Errorf("refused build touched the log: %d resets, %q", tb.log.resets, tb.log.String())
		}
		if state == BuilderBuilding {
			g.release <- builders.Result{Status: builders.BuildOK}
			tb.waitState(t, BuilderWaiting)
		}
	}
}

func TestAbort(t *testing.T) {
	tb := newTestBuilder(t, time.Minute)
	g := newGated()
	g.useTgt = true
	registerManager(t, "fake", g.manager)
	tb.target.killed = make(chan struct{})
	killed := tb.target.killed
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	env := <-g.started
	v, err := tb.rpc("abort")
	if err != nil || v != BuilderAborting {
		t.Fatalf("abort = %v, %v", v, err)
	}
	<-killed
	tb.waitState(t, BuilderWaiting)
	st := tb.status(t)
	want := map[string]any{"builder_status": BuilderWaiting, "builder_version": Version, "build_id": "B-1",
		"build_status": string(builders.BuildAborted), "revision_id": "0123abcd"}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("status after abort (-want +got):\n%s", diff)
	}
	if !strings.Contains(tb.log.String(), "cancelled\n") {
		t.Errorf("log = %q", tb.log.String())
	}
	if _, err := env.NewTarget(context.Background(), "fake", target.Spec{}); err == nil {
		t.Error("NewTarget after the build succeeded")
	}
	v, err = tb.rpc("abort")
	wantFault(t, v, err, 8002, "abort: the builder is WAITING")
}

func TestAbortingStatusAndRepeat(t *testing.T) {
	tb := newTestBuilder(t, time.Minute)
	g := newGated()
	g.stubborn = true
	registerManager(t, "fake", g.manager)
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	env := <-g.started
	for range 2 {
		if v, err := tb.rpc("abort"); err != nil || v != BuilderAborting {
			t.Fatalf("abort = %v, %v", v, err)
		}
	}
	want := map[string]any{"builder_status": BuilderAborting, "builder_version": Version, "build_id": "B-1", "revision_id": "0123abcd"}
	if diff := cmp.Diff(want, tb.status(t)); diff != "" {
		t.Errorf("ABORTING status (-want +got):\n%s", diff)
	}
	v, err := tb.rpc("clean")
	wantFault(t, v, err, 8002, "clean: the builder is ABORTING")
	v, err = tb.rpc("build", "B-2", "fake", tb.chroot, map[string]any{}, seriesArgs)
	wantFault(t, v, err, 8002, "build: the builder is ABORTING, not IDLE")
	if st := tb.status(t); st["build_id"] != "B-1" {
		t.Errorf("refused build changed build_id: %v", st)
	}
	if _, err := env.NewTarget(context.Background(), "fake", target.Spec{}); err == nil || !strings.Contains(err.Error(), "being aborted") {
		t.Errorf("NewTarget while aborting: %v", err)
	}
	// A manager that fails the builder while aborting: BUILDERFAIL, not ABORTED.
	g.release <- builders.Result{Status: builders.BuildBuilderFail}
	tb.waitState(t, BuilderWaiting)
	if st := tb.status(t); st["build_status"] != string(builders.BuildBuilderFail) {
		t.Errorf("status = %v", st)
	}
}

// A manager that ignores cancellation is abandoned after the abort timeout.
func TestAbortEscalation(t *testing.T) {
	tb := newTestBuilder(t, 50*time.Millisecond)
	g := newGated()
	g.stubborn = true
	g.useTgt = true
	registerManager(t, "fake", g.manager)
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	env := <-g.started
	if _, err := tb.rpc("abort"); err != nil {
		t.Fatal(err)
	}
	tb.waitState(t, BuilderWaiting)
	st := tb.status(t)
	if st["build_status"] != string(builders.BuildBuilderFail) {
		t.Errorf("status = %v", st)
	}
	if tb.target.killCount() == 0 {
		t.Error("abort did not kill the target's processes")
	}
	if !strings.HasSuffix(tb.log.String(), "ABORTING: Failed to kill all processes.\n") {
		t.Errorf("log = %q", tb.log.String())
	}
	// The abandoned manager's late output, results and status are dropped.
	logBefore := tb.log.String()
	fmt.Fprintln(env.Log, "late output")
	if _, err := env.AddWaitingFile("late", strings.NewReader("x")); err == nil {
		t.Error("AddWaitingFile from an abandoned build succeeded")
	}
	env.SetStatus("late", "x")
	g.release <- builders.Result{Status: builders.BuildOK}
	// Run returns now; make sure its return has been processed.
	tb.mu.Lock()
	done := tb.cur.done
	tb.mu.Unlock()
	<-done
	st2 := tb.status(t)
	if diff := cmp.Diff(st, st2); diff != "" {
		t.Errorf("late return changed status (-before +after):\n%s", diff)
	}
	if tb.log.String() != logBefore {
		t.Errorf("late output reached the log: %q", tb.log.String())
	}
	if _, err := tb.rpc("clean"); err != nil {
		t.Fatal(err)
	}
}

func TestManagerPanic(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	registerManager(t, "fake", func(req builders.Request) *funcManager {
		return &funcManager{run: func(ctx context.Context, env *builders.Env) builders.Result {
			panic("boom")
		}}
	})
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	tb.waitState(t, BuilderWaiting)
	if st := tb.status(t); st["build_status"] != string(builders.BuildBuilderFail) {
		t.Errorf("status = %v", st)
	}
	if !strings.Contains(tb.log.String(), "Internal error in the fake build manager: boom\n") {
		t.Errorf("log = %q", tb.log.String())
	}
}

func TestFactoryPanicAndNil(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	builders.Register("fake-panic", func(builders.Request) (builders.Manager, error) { panic("bad") })
	t.Cleanup(func() { builders.Unregister("fake-panic") })
	builders.Register("fake-nil", func(builders.Request) (builders.Manager, error) { return nil, nil })
	t.Cleanup(func() { builders.Unregister("fake-nil") })
	v, err := tb.rpc("build", "B-1", "fake-panic", tb.chroot, map[string]any{}, seriesArgs)
	wantFault(t, v, err, 8002, "internal error")
	v, err = tb.rpc("build", "B-1", "fake-nil", tb.chroot, map[string]any{}, seriesArgs)
	wantFault(t, v, err, 8002, "no manager")
	if tb.State() != BuilderIdle {
		t.Errorf("state = %s", tb.State())
	}
}

func TestProxyInfo(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	<-g.started
	want := map[string]any{"use_fetch_service": false, "revocation_endpoint": "http://proxy/revoke/B-1"}
	for _, state := range []string{BuilderBuilding, BuilderWaiting} {
		v, err := tb.rpc("proxy_info")
		if err != nil || !cmp.Equal(v, any(want)) {
			t.Errorf("%s: proxy_info = %v, %v", state, v, err)
		}
		g.release <- builders.Result{Status: builders.BuildOK}
		tb.waitState(t, BuilderWaiting)
	}
}

func TestSecretsRegistered(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	args := map[string]any{
		"series":    "noble",
		"proxy_url": "http://user:proxy-token-1@proxy.test:3128/",
		"archives":  []any{"deb http://buildd:ppa%2Fpass@ppa.test/ubuntu noble main"},
		"secrets":   map[string]any{"auth": "ci-secret-1", "nested": []any{"ci-secret-2"}},
		"api_token": "tok-123456",
		"password":  "abc", // too short to mask usefully
		"name":      "not-secret",
	}
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, args); err != nil {
		t.Fatal(err)
	}
	<-g.started
	want := []string{"ci-secret-1", "ci-secret-2", "ppa%2Fpass", "ppa/pass", "proxy-token-1", "tok-123456"}
	tb.log.mu.Lock()
	got := append([]string(nil), tb.log.secrets...)
	tb.log.mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	g.release <- builders.Result{Status: builders.BuildOK}
}

func TestSetStatusRules(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	if _, err := tb.rpc("build", "B-1", "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
		t.Fatal(err)
	}
	env := <-g.started
	env.SetStatus("builder_status", "hijacked")
	env.SetStatus("bad", make(chan int))
	env.SetStatus("revision_id", "new")
	env.SetStatus("jobs", map[string]any{"build:0": map[string]any{"result": "SUCCEEDED"}})
	st := tb.status(t)
	if st["builder_status"] != BuilderBuilding || st["revision_id"] != "new" || st["bad"] != nil || st["jobs"] == nil {
		t.Errorf("status = %v", st)
	}
	for _, name := range []string{"", "/abs", "a/../../b", "x\x00"} {
		if _, err := env.AddWaitingFile(name, strings.NewReader("x")); err == nil {
			t.Errorf("AddWaitingFile(%q) succeeded", name)
		}
	}
	if _, err := env.AddWaitingFile("build:0/ci.whl", strings.NewReader("x")); err != nil {
		t.Errorf("CI-style result name refused: %v", err)
	}
	if _, err := env.NewTarget(context.Background(), "nope", target.Spec{}); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("NewTarget(nope) = %v", err)
	}
	g.release <- builders.Result{Status: builders.BuildOK}
}

func TestStatusLogTail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"partial line", ""},
		{"first\n", ""},
		{"a\nb\nc\n", "b\nc"},
		{"a\nb\nc", "b\nc"},
		{"a\r\nb\rc\n\nd", "b\nc\n\nd"},
		{"a\n\n", ""},
	}
	for _, tt := range tests {
		if got := string(statusLogTail([]byte(tt.in))); got != tt.want {
			t.Errorf("statusLogTail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPyRepr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"snap", "'snap'"}, {"it's", `"it's"`}, {`a'b"c`, `'a\'b"c'`}, {"a\\b\n", `'a\\b\n'`}, {"\x01", `'\x01'`},
	}
	for _, tt := range tests {
		if got := pyRepr(tt.in); got != tt.want {
			t.Errorf("pyRepr(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := pyReprList([]string{"a", "b"}); got != "['a', 'b']" {
		t.Errorf("pyReprList = %s", got)
	}
}

// Concurrent callers during a build: no races (run with -race), no
// deadlocks.
func TestConcurrentCalls(t *testing.T) {
	tb := newTestBuilder(t, time.Second)
	g := newGated()
	registerManager(t, "fake", g.manager)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tb.rpc("status")
				tb.rpc("proxy_info")
			}
		}()
	}
	for i := range 20 {
		id := fmt.Sprintf("B-%d", i)
		if _, err := tb.rpc("build", id, "fake", tb.chroot, map[string]any{}, seriesArgs); err != nil {
			t.Fatal(err)
		}
		<-g.started
		if i%2 == 0 {
			tb.rpc("abort")
		} else {
			g.release <- builders.Result{Status: builders.BuildOK}
		}
		tb.waitState(t, BuilderWaiting)
		select {
		case <-g.release:
		default:
		}
		if _, err := tb.rpc("clean"); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
