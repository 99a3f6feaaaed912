package builders

// The fetch-service mode of the craft flow (use_fetch_service): proxy_url
// is a session of Launchpad's fetch service, a proxy that intercepts TLS
// with its own CA, whose certificate comes in secrets. As the reference's
// BuilderProxyOperationMixin (lpbuildd/target/proxy.py) and its build_*
// operations, the build then
//   - points apt at the builder proxy (/etc/apt/apt.conf.d/99proxy, http
//     and https), drops apt's lists, installs and trusts the certificate
//     (/usr/local/share/ca-certificates/local-ca.crt, update-ca-certificates),
//     points snapd at the builder proxy, runs apt-get update and restarts
//     snapd (to pick up the certificate); on focal, git uses protocol v2;
//   - checks the source out shallow, the one ref only;
//   - gives every build command CARGO_HTTP_CAINFO and REQUESTS_CA_BUNDLE
//     (the certificate) and GOPROXY=direct;
//   - revokes the session's token with the fetch service's form (a JSON
//     body, no authentication);
//   - reports use_fetch_service: true in proxy_info(), which makes
//     buildd-manager fetch the session's metadata after a good build.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

// MITMCertificatePath is where the fetch service's CA goes in the target.
const MITMCertificatePath = "/usr/local/share/ca-certificates/local-ca.crt"

// FetchService is a build's fetch-service mode.
type FetchService struct {
	// Certificate is the fetch service's CA certificate (PEM), decoded
	// from secrets["fetch_service_mitm_certificate"].
	Certificate []byte
}

// fetchServiceEnv is what build_proxy_environment adds for the fetch service.
var fetchServiceEnv = []string{
	"CARGO_HTTP_CAINFO=" + MITMCertificatePath,
	"REQUESTS_CA_BUNDLE=" + MITMCertificatePath,
	"GOPROXY=direct",
}

// parseFetchService reads use_fetch_service and secrets: nil when the
// fetch service is not used (use_fetch_service absent, nil or false).
func parseFetchService(p *ArgParser, args map[string]any) *FetchService {
	use := p.Bool("use_fetch_service")
	var secrets map[string]any
	if p.Has("secrets") {
		s, ok := args["secrets"].(map[string]any)
		if !ok {
			p.Fail("secrets", "must be a struct, not %s", typeName(args["secrets"]))
			return nil
		}
		secrets = s
	}
	if !use {
		return nil
	}
	raw, ok := secrets["fetch_service_mitm_certificate"].(string)
	if !ok || raw == "" {
		p.Fail("secrets", "use_fetch_service needs the fetch service's certificate in fetch_service_mitm_certificate")
		return nil
	}
	// The master sends `base64 -w0` of the PEM file; Python's b64decode
	// skips whitespace as well.
	cert, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(raw), ""))
	if err != nil || len(cert) == 0 {
		p.Fail("secrets", "fetch_service_mitm_certificate is not base64")
		return nil
	}
	if !bytes.Contains(cert, []byte("-----BEGIN CERTIFICATE-----")) {
		p.Fail("secrets", "fetch_service_mitm_certificate is not a PEM certificate")
		return nil
	}
	return &FetchService{Certificate: cert}
}

// InstallFetchService is the reference's fetch-service install steps,
// run at the end of the install phase. series picks git's protocol v2
// on focal.
func (b *ContainerBuild) InstallFetchService(ctx context.Context, fs *FetchService, series string) *Failure {
	if b.Proxy != nil {
		u := b.Proxy.URL()
		text := fmt.Sprintf("Acquire::http::Proxy \"%s\";\nAcquire::https::Proxy \"%s\";\n\n", u, u)
		if err := b.Target.CopyIn(ctx, strings.NewReader(text), "/etc/apt/apt.conf.d/99proxy", 0, 0, 0o644); err != nil {
			return b.ctxFail(ctx, BuildPackageFail, "cannot write /etc/apt/apt.conf.d/99proxy: %w", err)
		}
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"rm", "-rf", "/var/lib/apt/lists"}}); f != nil {
		return f
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"mkdir", "-p", "/usr/local/share/ca-certificates"}}); f != nil {
		return f
	}
	if err := b.Target.CopyIn(ctx, bytes.NewReader(fs.Certificate), MITMCertificatePath, 0, 0, 0o644); err != nil {
		return b.ctxFail(ctx, BuildPackageFail, "cannot write %s: %w", MITMCertificatePath, err)
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"update-ca-certificates"}}); f != nil {
		return f
	}
	if b.Proxy != nil {
		for _, scheme := range []string{"http", "https"} {
			if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"snap", "set", "system", "proxy." + scheme + "=" + b.Proxy.URL()}}); f != nil {
				return f
			}
		}
	}
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"apt-get", "-y", "update"}}); f != nil {
		return f
	}
	// snapd picks up the certificate when it restarts.
	if f := b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"systemctl", "restart", "snapd"}}); f != nil {
		return f
	}
	if series == "focal" {
		return b.Run(ctx, BuildPackageFail, target.Command{Args: []string{"git", "config", "--global", "protocol.version", "2"}})
	}
	return nil
}
