package builders

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// scanRunner is a fake ciRunner: it records each argv and env and answers
// with the scripted exit status (or error) of argv[0].
type scanRunner struct {
	calls [][]string
	envs  [][]string
	codes map[string]int
	errs  map[string]error
}

func (r *scanRunner) run(_ context.Context, argv, env []string) (int, error) {
	r.calls = append(r.calls, argv)
	r.envs = append(r.envs, env)
	return r.codes[argv[0]], r.errs[argv[0]]
}

// appendRecorder is a fake appendFile.
type appendRecorder struct {
	paths []string
	data  []string
	err   error
}

func (a *appendRecorder) append(_ context.Context, p string, data []byte) error {
	a.paths = append(a.paths, p)
	a.data = append(a.data, string(data))
	return a.err
}

func TestCIScanPackages(t *testing.T) {
	if got := ciScanPackages(); !reflect.DeepEqual(got, []string{"clamav"}) {
		t.Errorf("ciScanPackages() = %q, want the reference's [clamav]", got)
	}
}

func TestCIPrepareScanner(t *testing.T) {
	tests := []struct {
		name       string
		url        string
		codes      map[string]int
		runErr     error
		appendErr  error
		wantAppend []string // data appended to freshclam.conf
		wantRun    bool     // freshclam was run
		wantErr    string
	}{
		{name: "no mirror", wantRun: true},
		{name: "mirror", url: "http://clamav-database-mirror.lp.internal",
			wantAppend: []string{"PrivateMirror http://clamav-database-mirror.lp.internal\n"}, wantRun: true},
		{name: "https mirror with port and path", url: "https://10.10.10.1:8443/clamav",
			wantAppend: []string{"PrivateMirror https://10.10.10.1:8443/clamav\n"}, wantRun: true},
		{name: "freshclam fails", url: "http://m", codes: map[string]int{"freshclam": 57},
			wantAppend: []string{"PrivateMirror http://m\n"}, wantRun: true, wantErr: "freshclam exited 57"},
		{name: "freshclam cannot run", runErr: errors.New("exec broke"), wantRun: true, wantErr: "exec broke"},
		{name: "append fails", url: "http://m", appendErr: errors.New("disk full"),
			wantAppend: []string{"PrivateMirror http://m\n"}, wantErr: "disk full"},
		{name: "newline injects a directive", url: "http://m\nDatabaseCustomURL http://evil/x.hdb", wantErr: "white space"},
		{name: "space", url: "http://m /x", wantErr: "white space"},
		{name: "not http", url: "ftp://m/", wantErr: "not an http"},
		{name: "no host", url: "http:///x", wantErr: "not an http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &scanRunner{codes: tt.codes, errs: map[string]error{"freshclam": tt.runErr}}
			a := &appendRecorder{err: tt.appendErr}
			err := ciPrepareScanner(context.Background(), r.run, a.append, tt.url)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ciPrepareScanner: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ciPrepareScanner = %v, want an error containing %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(a.data, tt.wantAppend) {
				t.Errorf("appended %q, want %q", a.data, tt.wantAppend)
			}
			for _, p := range a.paths {
				if p != "/etc/clamav/freshclam.conf" {
					t.Errorf("appended to %q, want /etc/clamav/freshclam.conf", p)
				}
			}
			var want [][]string
			if tt.wantRun {
				want = [][]string{{"sh", "-c", stopFreshclamDaemon}, {"freshclam", "--quiet"}}
			}
			if !reflect.DeepEqual(r.calls, want) {
				t.Errorf("ran %q, want %q", r.calls, want)
			}
		})
	}
}

func TestCIScanOutput(t *testing.T) {
	env := []string{"http_proxy=http://10.10.10.1:8222/"}
	tests := []struct {
		name      string
		dir       string
		code      int
		runErr    error
		wantClean bool
		wantErr   string
		wantRun   bool
	}{
		{name: "clean", dir: "/build/output/test/0", wantClean: true, wantRun: true},
		{name: "found", dir: "/build/output/test/0", code: 1, wantRun: true},
		{name: "clamscan error", dir: "/build/output/test/0", code: 2, wantErr: "exit status 2", wantRun: true},
		{name: "cannot run", dir: "/build/output/test/0", runErr: errors.New("exec broke"), wantErr: "exec broke", wantRun: true},
		{name: "relative", dir: "build/output", wantErr: "not a clean absolute path"},
		{name: "unclean", dir: "/build/output/../etc", wantErr: "not a clean absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &scanRunner{codes: map[string]int{"clamscan": tt.code}, errs: map[string]error{"clamscan": tt.runErr}}
			clean, err := ciScanOutput(context.Background(), r.run, tt.dir, env)
			if clean != tt.wantClean {
				t.Errorf("clean = %v, want %v", clean, tt.wantClean)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("ciScanOutput: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ciScanOutput = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.code == 2 && !errors.Is(err, errClamscan) {
				t.Errorf("error %v is not errClamscan", err)
			}
			if !tt.wantRun {
				if len(r.calls) != 0 {
					t.Errorf("ran %q, want nothing", r.calls)
				}
				return
			}
			// run_ci.py: run_build_command(["clamscan", "--recursive",
			// job_output_path], env=env); the runner is the buildd one.
			want := [][]string{{"clamscan", "--recursive", tt.dir}}
			if !reflect.DeepEqual(r.calls, want) {
				t.Errorf("ran %q, want %q", r.calls, want)
			}
			if !reflect.DeepEqual(r.envs, [][]string{env}) {
				t.Errorf("env %q, want %q", r.envs, env)
			}
		})
	}
}

// FuzzPrivateMirrorLine: whatever the configured URL, what is appended to
// freshclam.conf is one PrivateMirror directive.
func FuzzPrivateMirrorLine(f *testing.F) {
	f.Add("http://clamav-database-mirror.lp.internal")
	f.Add("http://m\nDatabaseCustomURL http://evil/x.hdb")
	f.Add("https://10.10.10.1:8443/a b")
	f.Fuzz(func(t *testing.T, u string) {
		line, err := privateMirrorLine(u)
		if err != nil {
			return
		}
		if line != "PrivateMirror "+u+"\n" || strings.Count(line, "\n") != 1 || strings.Count(line, " ") != 1 || strings.ContainsRune(line, '\r') {
			t.Fatalf("privateMirrorLine(%q) = %q", u, line)
		}
	})
}
