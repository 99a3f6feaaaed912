//go:build e2etest

// The e2etest build manager exists only in binaries built with
// `-tags e2etest` (tests/e2e_agent_test.go builds one): it lets the
// end-to-end tests drive the real daemon through a whole build without a
// container. The shipped binary has no fake manager.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/buildd-agent/buildd-agent/builders"
	"github.com/buildd-agent/buildd-agent/builders/target"
)

// E2ETestTag is the manager tag tests name in build().
const E2ETestTag = "e2etest"

var e2eResults = map[string]builders.BuildStatus{
	"ok":          builders.BuildOK,
	"packagefail": builders.BuildPackageFail,
	"depfail":     builders.BuildDepFail,
	"givenback":   builders.BuildGivenBack,
	"chrootfail":  builders.BuildChrootFail,
	"builderfail": builders.BuildBuilderFail,
}

func init() {
	builders.Register(E2ETestTag, newE2EManager)
}

// e2eManager's arguments:
//
//	result        "ok" (default), "packagefail", "depfail", "givenback",
//	              "chrootfail", "builderfail", or "panic"
//	sleep         seconds to run (int or double, default 0, at most 3600)
//	output        text stored as the result file "output.txt"
//	ignore_cancel true: keep sleeping after abort (tests the watchdog)
//	make_home     true: make <build_home>/build-<id> with os.Mkdir first, as
//	              the chroot target does (an existing one is CHROOTFAIL
//	              "file exists"), fill it with home_files files of
//	              home_file_bytes bytes, and remove it at the end
//	sparse_result_bytes  n: also store "big.snap", a sparse file of n bytes
//	              (apparent size); a size-limit refusal is PACKAGEFAIL
//	fifo_result   true: gather *.snap results with the real gathering code
//	              from a host directory holding good.snap and a FIFO
//	              evil.snap, through a target that lists everything as a
//	              regular file and whose CopyOut opens like any plain open
//	              (a FIFO blocks it)
type e2eManager struct {
	req           builders.Request
	result        string
	sleep         time.Duration
	output        string
	ignoreCancel  bool
	makeHome      bool
	homeFiles     int64
	homeFileBytes int64
	sparseBytes   int64
	fifoResult    bool
}

func newE2EManager(req builders.Request) (builders.Manager, error) {
	m := &e2eManager{req: req, result: "ok", output: "e2e output\n"}
	if v, ok := req.Args["result"]; ok {
		s, isStr := v.(string)
		if _, known := e2eResults[s]; !isStr || !known && s != "panic" {
			return nil, &builders.ArgError{Arg: "result", Reason: fmt.Sprintf("must be one of ok, packagefail, depfail, givenback, chrootfail, builderfail, panic; got %v", v)}
		}
		m.result = s
	}
	if v, ok := req.Args["sleep"]; ok {
		var secs float64
		switch x := v.(type) {
		case int64:
			secs = float64(x)
		case float64:
			secs = x
		default:
			return nil, &builders.ArgError{Arg: "sleep", Reason: fmt.Sprintf("must be a number of seconds, got %T", v)}
		}
		if secs < 0 || secs > 3600 {
			return nil, &builders.ArgError{Arg: "sleep", Reason: "must be between 0 and 3600 seconds"}
		}
		m.sleep = time.Duration(secs * float64(time.Second))
	}
	if v, ok := req.Args["output"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return nil, &builders.ArgError{Arg: "output", Reason: "must be a string"}
		}
		m.output = s
	}
	for name, dst := range map[string]*bool{"ignore_cancel": &m.ignoreCancel, "make_home": &m.makeHome, "fifo_result": &m.fifoResult} {
		if v, ok := req.Args[name]; ok {
			b, isBool := v.(bool)
			if !isBool {
				return nil, &builders.ArgError{Arg: name, Reason: "must be a boolean"}
			}
			*dst = b
		}
	}
	for name, dst := range map[string]*int64{"home_files": &m.homeFiles, "home_file_bytes": &m.homeFileBytes, "sparse_result_bytes": &m.sparseBytes} {
		if v, ok := req.Args[name]; ok {
			n, isInt := v.(int64)
			if !isInt || n < 0 {
				return nil, &builders.ArgError{Arg: name, Reason: "must be a non-negative int"}
			}
			*dst = n
		}
	}
	return m, nil
}

func (m *e2eManager) ProxyInfo() (bool, string) { return false, "" }

func (m *e2eManager) Run(ctx context.Context, env *builders.Env) builders.Result {
	fmt.Fprintf(env.Log, "e2etest build %s starting\n", m.req.BuildID)
	names := make([]string, 0, len(m.req.Files))
	for name := range m.req.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fi, err := os.Stat(m.req.Files[name])
		if err != nil {
			fmt.Fprintf(env.Log, "input %s missing: %v\n", name, err)
			return builders.Result{Status: builders.BuildBuilderFail}
		}
		fmt.Fprintf(env.Log, "input %s: %d bytes\n", name, fi.Size())
	}
	if m.makeHome {
		home, err := m.mkHome(env)
		if err != nil {
			fmt.Fprintf(env.Log, "cannot create the build home: %v\n", err)
			return builders.Result{Status: builders.BuildChrootFail}
		}
		defer os.RemoveAll(home)
	}
	if m.sleep > 0 {
		fmt.Fprintf(env.Log, "sleeping %s\n", m.sleep)
		timer := time.NewTimer(m.sleep)
		defer timer.Stop()
		done := ctx.Done()
		if m.ignoreCancel {
			done = nil
		}
		select {
		case <-timer.C:
		case <-done:
			fmt.Fprintln(env.Log, "cancelled")
			return builders.Result{Status: builders.BuildPackageFail}
		}
	}
	if m.result == "panic" {
		panic("e2etest manager asked to panic")
	}
	if _, err := env.AddWaitingFile("output.txt", bytes.NewBufferString(m.output)); err != nil {
		fmt.Fprintf(env.Log, "cannot store output.txt: %v\n", err)
		return builders.Result{Status: builders.BuildBuilderFail}
	}
	// A second, binary result with a CI-style name.
	blob := bytes.Repeat([]byte{0, 1, 2, 253, 254, 255}, 20000)
	if _, err := env.AddWaitingFile("build:0/artifact.bin", bytes.NewReader(blob)); err != nil {
		fmt.Fprintf(env.Log, "cannot store artifact.bin: %v\n", err)
		return builders.Result{Status: builders.BuildBuilderFail}
	}
	if m.sparseBytes > 0 {
		if f := m.storeSparse(env); f != nil {
			return *f
		}
	}
	if m.fifoResult {
		if f := m.gatherFIFO(ctx, env); f != nil {
			return *f
		}
	}
	env.SetStatus("revision_id", "e2e0123456789abcdef0123456789abcdef01234")
	fmt.Fprintf(env.Log, "e2etest build %s done: %s\n", m.req.BuildID, m.result)
	res := builders.Result{Status: e2eResults[m.result]}
	if res.Status == builders.BuildDepFail {
		res.Dependencies = "libe2e-dev (>= 1.0)"
	}
	return res
}

// mkHome is the chroot target's build home: Mkdir, never MkdirAll, so that
// a home a killed agent left makes the build fail unless swept.
func (m *e2eManager) mkHome(env *builders.Env) (string, error) {
	if err := os.MkdirAll(env.Config.BuildHome, 0o755); err != nil {
		return "", err
	}
	home := filepath.Join(env.Config.BuildHome, "build-"+m.req.BuildID)
	if err := os.Mkdir(home, 0o755); err != nil {
		return "", err
	}
	block := bytes.Repeat([]byte("leftover "), int(m.homeFileBytes/9)+1)[:m.homeFileBytes]
	for i := int64(0); i < m.homeFiles; i++ {
		dir := filepath.Join(home, "chroot", fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return home, err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), block, 0o644); err != nil {
			return home, err
		}
	}
	fmt.Fprintf(env.Log, "made %s with %d files\n", home, m.homeFiles)
	return home, nil
}

// storeSparse stores a sparse file of m.sparseBytes as big.snap.
func (m *e2eManager) storeSparse(env *builders.Env) *builders.Result {
	f, err := os.CreateTemp("", "e2e-sparse-")
	if err != nil {
		fmt.Fprintf(env.Log, "cannot make the sparse file: %v\n", err)
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(m.sparseBytes); err != nil {
		fmt.Fprintf(env.Log, "cannot make the sparse file: %v\n", err)
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	if _, err := env.AddWaitingFile("big.snap", f); err != nil {
		fmt.Fprintf(env.Log, "cannot store big.snap: %v\n", err)
		if errors.Is(err, builders.ErrResultTooLarge) {
			return &builders.Result{Status: builders.BuildPackageFail}
		}
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	return nil
}

// gatherFIFO runs builders' GatherResults over a host directory holding a
// regular good.snap and a FIFO evil.snap.
func (m *e2eManager) gatherFIFO(ctx context.Context, env *builders.Env) *builders.Result {
	dir, err := os.MkdirTemp("", "e2e-fifo-")
	if err != nil {
		fmt.Fprintf(env.Log, "cannot make the output directory: %v\n", err)
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "good.snap"), []byte("good snap\n"), 0o644); err != nil {
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "evil.snap"), 0o644); err != nil {
		fmt.Fprintf(env.Log, "cannot make the FIFO: %v\n", err)
		return &builders.Result{Status: builders.BuildBuilderFail}
	}
	b := builders.NewContainerBuild(env, m.req, builders.CommonArgs{}, nil, nil)
	b.Target = hostDirTarget{root: dir}
	if f := b.GatherResults(ctx, "/", func(name string) bool { return strings.HasSuffix(name, ".snap") }); f != nil {
		fmt.Fprintf(env.Log, "%v\n", f)
		return &builders.Result{Status: f.Status}
	}
	return nil
}

// hostDirTarget is a target over a host directory with just what result
// gathering uses. ListDir reports every entry as a regular file (as if
// the build swapped a file for a FIFO after the listing); Stat is a real
// lstat; CopyOut is a plain open, which blocks on a FIFO.
type hostDirTarget struct{ root string }

var errHostDirTarget = errors.New("not supported by the e2etest host directory target")

func (h hostDirTarget) Create(context.Context, target.Image) error       { return errHostDirTarget }
func (h hostDirTarget) Start(context.Context) error                      { return errHostDirTarget }
func (h hostDirTarget) Run(context.Context, target.Command) (int, error) { return 0, errHostDirTarget }
func (h hostDirTarget) CopyTreeIn(context.Context, io.Reader, string, int, int) error {
	return errHostDirTarget
}
func (h hostDirTarget) CopyIn(context.Context, io.Reader, string, int, int, fs.FileMode) error {
	return errHostDirTarget
}
func (h hostDirTarget) KillProcesses(context.Context) error { return nil }
func (h hostDirTarget) Stop(context.Context) error          { return nil }
func (h hostDirTarget) Remove(context.Context) error        { return nil }
func (h hostDirTarget) ProxyHost() string                   { return "127.0.0.1" }

func (h hostDirTarget) Stat(_ context.Context, p string) (target.FileInfo, error) {
	fi, err := os.Lstat(filepath.Join(h.root, p))
	if err != nil {
		return target.FileInfo{}, err
	}
	return target.FileInfo{Name: fi.Name(), Mode: fi.Mode(), Size: fi.Size()}, nil
}

func (h hostDirTarget) ListDir(_ context.Context, p string) ([]target.FileInfo, error) {
	entries, err := os.ReadDir(filepath.Join(h.root, p))
	if err != nil {
		return nil, err
	}
	out := make([]target.FileInfo, 0, len(entries))
	for _, e := range entries {
		out = append(out, target.FileInfo{Name: e.Name(), Mode: 0o644})
	}
	return out, nil
}

func (h hostDirTarget) CopyOut(_ context.Context, p string, w io.Writer) error {
	f, err := os.Open(filepath.Join(h.root, p))
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
