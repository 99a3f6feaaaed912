package agent

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigRemoteLXDTLS(t *testing.T) {
	for _, tc := range []struct {
		name, lxd string
		want      []string // problem keys; none = valid
	}{
		{"remote with certificates", `remote_url = "https://lxd.example:8443"
tls_client_cert = "/etc/buildd-agent/client.crt"
tls_client_key = "/etc/buildd-agent/client.key"
tls_server_cert = "/etc/buildd-agent/server.crt"`, nil},
		{"remote without client certificate", `remote_url = "https://lxd.example:8443"`, []string{"lxd.remote_url"}},
		{"certificate without remote", `tls_client_cert = "/c.crt"`, []string{"lxd.tls_client_cert"}},
		{"relative key", `remote_url = "https://lxd.example:8443"
tls_client_cert = "/c.crt"
tls_client_key = "c.key"`, []string{"lxd.tls_client_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte("[lxd]\n" + tc.lxd + "\n"))
			var problems ConfigErrors
			errors.As(err, &problems)
			if len(problems) != len(tc.want) {
				t.Fatalf("problems %v, want keys %v (err %v)", problems, tc.want, err)
			}
			for i, k := range tc.want {
				if problems[i].Key != k || !strings.Contains(problems[i].String(), k) {
					t.Errorf("problem %d = %v, want key %s", i, problems[i], k)
				}
			}
		})
	}
}
