package agent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Builder
	if b.Port != 8221 || b.BindAddress != "127.0.0.1" || b.Backend != "lxd" || b.AbortTimeout.Duration != 120*time.Second {
		t.Errorf("defaults: %+v", b)
	}
	// We run the tests as root: the system state directory.
	if geteuid() == 0 && (b.StateDir != "/var/lib/buildd-agent" ||
		b.FileCacheDir != "/var/lib/buildd-agent/filecache" || b.BuildHome != "/var/lib/buildd-agent/builds") {
		t.Errorf("derived directories: %q %q %q", b.StateDir, b.FileCacheDir, b.BuildHome)
	}
	if cfg.Limits.LogBytes != 1<<30 || cfg.Log.Format != "text" || b.FileCacheMaxAge.Duration != 48*time.Hour {
		t.Errorf("defaults: %+v %+v", cfg.Limits, cfg.Log)
	}
}

func TestParseConfigOverlay(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
[builder]
architectures = ["arm64", "armhf"]
port = 9000
state_dir = "/srv/buildd"
build_home = "/home/buildd"

[log]
format = "json"
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Builder
	if diff := cmp.Diff([]string{"arm64", "armhf"}, b.Architectures); diff != "" {
		t.Errorf("architectures (-want +got):\n%s", diff)
	}
	if b.Port != 9000 || b.BindAddress != "127.0.0.1" || b.FileCacheDir != "/srv/buildd/filecache" || b.BuildHome != "/home/buildd" {
		t.Errorf("builder: %+v", b)
	}
	if cfg.Log.Format != "json" || cfg.Log.Level != "info" {
		t.Errorf("log: %+v", cfg.Log)
	}
}

func TestParseConfigNonRootStateDir(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	t.Setenv("XDG_STATE_HOME", "/home/u/.state")
	cfg, err := ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Builder.FileCacheDir; got != "/home/u/.state/buildd-agent/filecache" {
		t.Errorf("file cache for a user: %q", got)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	cfg, _ = ParseConfig(nil)
	if got := cfg.Builder.StateDir; got != "/home/u/.local/state/buildd-agent" {
		t.Errorf("state dir for a user without XDG_STATE_HOME: %q", got)
	}
	// An explicit state_dir is kept.
	cfg, _ = ParseConfig([]byte("[builder]\nstate_dir = \"/var/lib/buildd-agent\"\n"))
	if got := cfg.Builder.StateDir; got != "/var/lib/buildd-agent" {
		t.Errorf("explicit state dir: %q", got)
	}
}

func TestParseConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want ConfigErrors
	}{
		{"syntax error", "[builder]\nport = = 3\n", ConfigErrors{{Key: "builder.port", Line: 2}}},
		{"unknown key", "[builder]\n\nbindhost = \"x\"\n", ConfigErrors{{Key: "builder.bindhost", Line: 3, Msg: "unknown key"}}},
		{"unknown section", "# c\n[slave]\nfoo = 1\n", ConfigErrors{{Key: "slave", Line: 2, Msg: "unknown section [slave]"}}},
		{"top-level key", "port = 1\n", ConfigErrors{{Key: "port", Line: 1}}},
		{"section not a table", "builder = 3\n", ConfigErrors{{Key: "builder", Line: 1}}},
		{"wrong type", "[builder]\nport = \"8221\"\n", ConfigErrors{{Key: "builder.port", Line: 2,
			Msg: "wrong type: the value is string, expected integer"}}},
		{"wrong array type", "[builder]\narchitectures = \"amd64\"\n", ConfigErrors{{Key: "builder.architectures", Line: 2}}},
		{"bad duration", "[builder]\nabort_timeout = \"2 minutes\"\n", ConfigErrors{{Key: "builder.abort_timeout", Line: 2}}},
		{"dotted keys", "builder.port = 0\n", ConfigErrors{{Key: "builder.port", Line: 1, Msg: "0 is not a port number (1 to 65535)"}}},
		{"quoted key", "[builder]\n\"bind_address\" = \"localhost\"\n", ConfigErrors{{Key: "builder.bind_address", Line: 2}}},
		{"clamav database not http", "[proxy]\nclamavdatabase = \"ftp://mirror/\"\n", ConfigErrors{{Key: "proxy.clamavdatabase", Line: 2}}},
		{"key after multi-line array", "[builder]\narchitectures = [\n  \"amd64\",\n  \"i386\",\n]\nbogus = 1\n",
			ConfigErrors{{Key: "builder.bogus", Line: 6, Msg: "unknown key"}}},
		{"all problems at once", `[builder]
architectures = []
bind_address = "localhost"
port = 70000
state_dir = "relative"
backend = "docker"
abort_timeout = "0s"
file_cache_max_age = "-1h"
metrics_address = "nope"

[proxy]
port = -1
apt = "ftp://x"

[lxd]
bridge = "a-very-long-bridge-name"
subnet = "10.10.10.0/24"
storage_pool = ""
ready_timeout = "-1s"
image_max_count = 0
remote_url = "http://x"

[limits]
log_bytes = 10
request_body_bytes = 0

[log]
level = "verbose"
format = "xml"
`, ConfigErrors{
			{Key: "builder.architectures", Line: 2},
			{Key: "builder.bind_address", Line: 3},
			{Key: "builder.port", Line: 4},
			{Key: "builder.state_dir", Line: 5},
			{Key: "builder.backend", Line: 6},
			{Key: "builder.abort_timeout", Line: 7},
			{Key: "builder.file_cache_max_age", Line: 8},
			{Key: "builder.metrics_address", Line: 9},
			{Key: "proxy.port", Line: 12},
			{Key: "proxy.apt", Line: 13},
			{Key: "lxd.bridge", Line: 16},
			{Key: "lxd.subnet", Line: 17},
			{Key: "lxd.storage_pool", Line: 18},
			{Key: "lxd.ready_timeout", Line: 19},
			{Key: "lxd.image_max_count", Line: 20},
			{Key: "lxd.remote_url", Line: 21},
			{Key: "limits.log_bytes", Line: 24},
			{Key: "limits.request_body_bytes", Line: 25},
			{Key: "log.level", Line: 28},
			{Key: "log.format", Line: 29},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.toml))
			var got ConfigErrors
			if !errors.As(err, &got) {
				t.Fatalf("ParseConfig = %+v, %v; want ConfigErrors", cfg, err)
			}
			// Messages are checked where the case gives one.
			for i := range got {
				if i < len(tt.want) && tt.want[i].Msg == "" {
					got[i].Msg = ""
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// Every problem message is non-empty and mentions what is wrong.
func TestParseConfigMessages(t *testing.T) {
	_, err := ParseConfig([]byte("[builder]\nport = \"x\"\nbackend = \"docker\"\n[log]\nlevel = 3\n"))
	var pe ConfigErrors
	if !errors.As(err, &pe) || len(pe) != 3 {
		t.Fatalf("err = %v", err)
	}
	for _, p := range pe {
		if p.Msg == "" || p.Line == 0 || p.Key == "" {
			t.Errorf("incomplete problem %+v", p)
		}
	}
	if !strings.Contains(err.Error(), `line 3: builder.backend: "docker" is not one of lxd, chroot`) {
		t.Errorf("Error() = %q", err)
	}
}

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "etc", "buildd-agent.toml"))
	if err != nil {
		t.Fatalf("the example configuration does not load: %v", err)
	}
	if cfg.Builder.Port != 8221 {
		t.Errorf("example port %d", cfg.Builder.Port)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "cannot read configuration") {
		t.Errorf("missing file: %v", err)
	}
}

// The example documents every key the agent knows, each with a comment.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "etc", "buildd-agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := keyLines(data)
	text := strings.Split(string(data), "\n")
	root := reflect.TypeOf(Config{})
	for section, si := range tomlFields(root) {
		for key := range tomlFields(root.Field(si).Type) {
			full := section + "." + key
			n, ok := lines[full]
			if !ok {
				t.Errorf("etc/buildd-agent.toml does not document %s", full)
				continue
			}
			// A comment right above it, or above the keys grouped with it.
			i := n - 2
			for i >= 0 && strings.Contains(text[i], "=") && !strings.HasPrefix(strings.TrimSpace(text[i]), "#") {
				i--
			}
			if i < 0 || !strings.HasPrefix(strings.TrimSpace(text[i]), "#") {
				t.Errorf("%s (line %d) has no comment", full, n)
			}
		}
	}
}

func TestKeyLines(t *testing.T) {
	got := keyLines([]byte(`# comment
top = 1
[builder] # trailing comment
port = 8221
text = """
fake = 1
"""
arr = [ "a", # ]
  "b" ]
after = 2
[ "lxd" . sub ]
'quoted' = 1
`))
	want := map[string]int{"top": 2, "builder": 3, "builder.port": 4, "builder.text": 5, "builder.arr": 8,
		"builder.after": 10, "lxd.sub": 11, "lxd.sub.quoted": 12}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keyLines (-want +got):\n%s", diff)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("[builder]\nport = 8221\n"))
	f.Add([]byte("[builder]\narchitectures = [\n\"amd64\"]\n[lxd]\nsubnet = \"10.0.0.1/24\"\n"))
	f.Add([]byte("x = \"\"\"\n[a]\n\"\"\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err == nil && cfg == nil {
			t.Fatal("no config and no error")
		}
		var pe ConfigErrors
		if err != nil && errors.As(err, &pe) && len(pe) == 0 {
			t.Fatal("empty ConfigErrors")
		}
	})
}

// [proxy] clamavdatabase reaches the managers as the ClamAV mirror (the
// reference's [proxy] clamavdatabase → --clamav-database-url).
func TestClamAVDatabaseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte("[proxy]\nclamavdatabase = \"http://clamav-database-mirror.lp.internal\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := configBuilder(cfg).managerConfig().ClamAVDatabaseURL; got != "http://clamav-database-mirror.lp.internal" {
		t.Errorf("ManagerConfig.ClamAVDatabaseURL = %q", got)
	}
	cfg, err = ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := configBuilder(cfg).managerConfig().ClamAVDatabaseURL; got != "" {
		t.Errorf("default ClamAVDatabaseURL = %q, want none", got)
	}
}

// configBuilder is a Builder with just a configuration, for managerConfig.
func configBuilder(cfg *Config) *Builder {
	b := &Builder{builderDeps: builderDeps{cfg: cfg}}
	l := LimitsFromConfig(cfg)
	b.limits.Store(&l)
	return b
}
