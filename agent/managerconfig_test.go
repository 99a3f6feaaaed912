package agent

import "testing"

// Every setting a manager reads reaches builders.ManagerConfig from the
// configuration file, for the daemon and the local build commands alike
// (`build ci` once lost [proxy] clamavdatabase to a copy of this mapping).
func TestManagerConfigFromFile(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
[builder]
backend = "chroot"
state_dir = "/srv/state"
build_home = "/srv/home"
[proxy]
bind_address = "10.9.9.1"
port = 8333
snapstore = "http://snapstore.test/"
apt = "http://apt-proxy.test:3142/"
clamavdatabase = "http://clamav.test/"
[limits]
result_file_bytes = 12345678
[sbuild]
user = "sbuilder"
[lxd]
image_max_count = 7
`))
	if err != nil {
		t.Fatal(err)
	}
	m := ManagerConfig(cfg, "riscv64")
	for name, ok := range map[string]bool{
		"Arch":              m.Arch == "riscv64",
		"Backend":           m.Backend == "chroot",
		"StateDir":          m.StateDir == "/srv/state",
		"BuildHome":         m.BuildHome == "/srv/home",
		"ProxyBind":         m.ProxyBind == "10.9.9.1",
		"ProxyPort":         m.ProxyPort == 8333,
		"SnapStoreProxyURL": m.SnapStoreProxyURL == "http://snapstore.test/",
		"AptProxyURL":       m.AptProxyURL == "http://apt-proxy.test:3142/",
		"ClamAVDatabaseURL": m.ClamAVDatabaseURL == "http://clamav.test/",
		"ResultFileBytes":   m.ResultFileBytes == 12345678,
		"SbuildUser":        m.SbuildUser == "sbuilder",
		"ImageMaxCount":     m.ImageMaxCount == 7,
	} {
		if !ok {
			t.Errorf("%s not taken from the file: %+v", name, m)
		}
	}
}
