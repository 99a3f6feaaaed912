package builders

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// fakeRun is what a fake command does: its exit code, what it prints, and
// an error meaning "could not be run".
type fakeRun struct {
	code   int
	stdout string
	err    error
}

// recordedCommand is a command the fake target ran.
type recordedCommand struct {
	Args  []string
	Env   []string
	Dir   string
	Stdin string
}

// fakeFile is one entry of the fake target's file system.
type fakeFile struct {
	mode     fs.FileMode
	data     []byte
	uid, gid int
	link     string
}

// fakeTarget is an in-memory target.Target: it records every command and
// file operation, keeps a tiny file system, and lets tests script command
// results (onRun) and errors of any lifecycle step.
type fakeTarget struct {
	mu       sync.Mutex
	spec     target.Spec
	backend  string
	image    target.Image
	log      io.Writer
	commands []recordedCommand
	files    map[string]*fakeFile
	calls    []string // lifecycle: create, start, stop, remove, kill

	// onRun scripts commands; nil or a zero fakeRun means exit 0.
	onRun func(cmd recordedCommand) fakeRun
	// errs makes a lifecycle step fail: "create", "start", "stop", "remove",
	// "copyout", "copytreein", "listdir".
	errs map[string]error
	// blockRun, if set, makes Run of a command whose argv[0] equals it block
	// until ctx is cancelled (abort tests).
	blockRun string
	running  chan struct{}
}

func newFakeTarget() *fakeTarget {
	t := &fakeTarget{files: map[string]*fakeFile{}, errs: map[string]error{}, running: make(chan struct{}, 16)}
	for _, d := range []string{"/", "/build", "/root", "/usr", "/usr/local", "/usr/local/bin", "/tmp", "/etc", "/etc/apt",
		"/etc/apt/sources.list.d", "/etc/apt/apt.conf.d", "/etc/apt/preferences.d", "/etc/apt/trusted.gpg.d"} {
		t.files[d] = &fakeFile{mode: fs.ModeDir | 0o755}
	}
	return t
}

func (t *fakeTarget) call(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, name)
	return t.errs[name]
}

func (t *fakeTarget) Create(ctx context.Context, img target.Image) error {
	t.image = img
	return t.call("create")
}

func (t *fakeTarget) Start(ctx context.Context) error { return t.call("start") }

func (t *fakeTarget) Run(ctx context.Context, cmd target.Command) (int, error) {
	rc := recordedCommand{Args: append([]string(nil), cmd.Args...), Env: append([]string(nil), cmd.Env...), Dir: cmd.Dir}
	if cmd.Stdin != nil {
		b, _ := io.ReadAll(cmd.Stdin)
		rc.Stdin = string(b)
	}
	t.mu.Lock()
	t.commands = append(t.commands, rc)
	onRun, block := t.onRun, t.blockRun
	t.mu.Unlock()
	if block != "" && len(cmd.Args) > 0 && cmd.Args[0] == block {
		t.running <- struct{}{}
		<-ctx.Done()
		return 137, nil
	}
	var r fakeRun
	if onRun != nil {
		r = onRun(rc)
	}
	if r.err != nil {
		return -1, r.err
	}
	out := cmd.Stdout
	if out == nil {
		out = t.log
	}
	if r.stdout != "" && out != nil {
		io.WriteString(out, r.stdout)
	}
	if len(cmd.Args) > 1 && cmd.Args[0] == "mkdir" && cmd.Args[1] == "-p" {
		for _, d := range cmd.Args[2:] {
			t.mkdirAll(d)
		}
	}
	return r.code, nil
}

func (t *fakeTarget) mkdirAll(p string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A relative path (mkdir -p auto, run in the build directory) would
	// never reach "/": it ends at ".".
	for d := path.Clean(p); d != "/" && d != "."; d = path.Dir(d) {
		if _, ok := t.files[d]; !ok {
			t.files[d] = &fakeFile{mode: fs.ModeDir | 0o755}
		}
	}
}

// put adds a file (tests use it to plant results).
func (t *fakeTarget) put(p string, data string, mode fs.FileMode) {
	t.mkdirAll(path.Dir(p))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.files[p] = &fakeFile{mode: mode, data: []byte(data)}
}

func (t *fakeTarget) symlink(p, to string) {
	t.mkdirAll(path.Dir(p))
	t.mu.Lock()
	defer t.mu.Unlock()
	t.files[p] = &fakeFile{mode: fs.ModeSymlink | 0o777, link: to}
}

func (t *fakeTarget) CopyIn(ctx context.Context, r io.Reader, p string, uid, gid int, mode fs.FileMode) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.files[path.Dir(p)]; !ok || !d.mode.IsDir() {
		return fmt.Errorf("cannot copy to %s: parent: %w", p, target.ErrNotExist)
	}
	t.files[p] = &fakeFile{mode: mode, data: data, uid: uid, gid: gid}
	return nil
}

func (t *fakeTarget) CopyOut(ctx context.Context, p string, w io.Writer) error {
	if err := t.errs["copyout"]; err != nil {
		return err
	}
	t.mu.Lock()
	f, ok := t.files[p]
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("cannot copy %s: %w", p, target.ErrNotExist)
	}
	if f.mode&fs.ModeSymlink != 0 {
		return fmt.Errorf("cannot copy %s: %w", p, target.ErrSymlink)
	}
	_, err := w.Write(f.data)
	return err
}

func (t *fakeTarget) CopyTreeIn(ctx context.Context, r io.Reader, dir string, uid, gid int) error {
	if err := t.errs["copytreein"]; err != nil {
		io.Copy(io.Discard, r)
		return err
	}
	t.mkdirAll(dir)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := path.Join(dir, h.Name)
		if !strings.HasPrefix(p+"/", path.Clean(dir)+"/") {
			return fmt.Errorf("entry %q lands outside %s", h.Name, dir)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			t.mkdirAll(p)
		case tar.TypeSymlink:
			t.symlink(p, h.Linkname)
		default:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			t.put(p, string(data), fs.FileMode(h.Mode)&fs.ModePerm)
			t.mu.Lock()
			t.files[p].uid, t.files[p].gid = uid, gid
			t.mu.Unlock()
		}
	}
}

func (t *fakeTarget) Stat(ctx context.Context, p string) (target.FileInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.files[path.Clean(p)]
	if !ok {
		return target.FileInfo{}, fmt.Errorf("cannot stat %s: %w", p, target.ErrNotExist)
	}
	return target.FileInfo{Name: path.Base(p), Mode: f.mode, Size: int64(len(f.data))}, nil
}

func (t *fakeTarget) ListDir(ctx context.Context, p string) ([]target.FileInfo, error) {
	if err := t.errs["listdir"]; err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p = path.Clean(p)
	if _, ok := t.files[p]; !ok {
		return nil, fmt.Errorf("cannot list %s: %w", p, target.ErrNotExist)
	}
	var out []target.FileInfo
	for name, f := range t.files {
		if name != p && path.Dir(name) == p {
			out = append(out, target.FileInfo{Name: path.Base(name), Mode: f.mode, Size: int64(len(f.data))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (t *fakeTarget) KillProcesses(ctx context.Context) error { return t.call("kill") }
func (t *fakeTarget) Stop(ctx context.Context) error          { return t.call("stop") }
func (t *fakeTarget) Remove(ctx context.Context) error        { return t.call("remove") }
func (t *fakeTarget) ProxyHost() string                       { return "10.10.10.1" }

// argvs lists the commands run, each joined with spaces.
func (t *fakeTarget) argvs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.commands))
	for _, c := range t.commands {
		out = append(out, strings.Join(c.Args, " "))
	}
	return out
}

// command returns the first recorded command whose argv starts with prefix.
func (t *fakeTarget) command(prefix ...string) (recordedCommand, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.commands {
		if len(c.Args) >= len(prefix) && strings.Join(c.Args[:len(prefix)], "\x00") == strings.Join(prefix, "\x00") {
			return c, true
		}
	}
	return recordedCommand{}, false
}

// fakeEnv is an Env around a fake target that records everything the
// manager reports to the agent.
type fakeEnv struct {
	Env
	target    *fakeTarget
	log       bytes.Buffer
	logMu     sync.Mutex
	secrets   []string
	waiting   map[string][]byte
	waitOrder []string
	status    map[string]any
	newErr    error
	backends  []string
	addErr    error
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newFakeEnv(t *fakeTarget) *fakeEnv {
	e := &fakeEnv{target: t, waiting: map[string][]byte{}, status: map[string]any{}}
	e.Log = lockedWriter{mu: &e.logMu, w: &e.log}
	t.log = e.Log
	e.AddSecret = func(s string) { e.secrets = append(e.secrets, s) }
	e.NewTarget = func(ctx context.Context, backend string, spec target.Spec) (target.Target, error) {
		e.backends = append(e.backends, backend)
		t.spec = spec
		t.backend = backend
		if e.newErr != nil {
			return nil, e.newErr
		}
		return t, nil
	}
	e.AddWaitingFile = func(name string, r io.Reader) (string, error) {
		data, err := io.ReadAll(r)
		if err != nil {
			return "", err
		}
		if e.addErr != nil {
			return "", e.addErr
		}
		e.waiting[name] = data
		e.waitOrder = append(e.waitOrder, name)
		return fmt.Sprintf("%040x", len(data)), nil
	}
	e.SetStatus = func(k string, v any) { e.status[k] = v }
	e.Config = ManagerConfig{Arch: "amd64", Backend: "lxd", ProxyPort: 8222, StateDir: ""}
	return e
}

func (e *fakeEnv) logText() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.log.String()
}

var errFake = errors.New("fake failure")
