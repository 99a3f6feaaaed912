package vcs

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/tests/gitserver"
)

// TestCheckoutCABundle: an https repository whose certificate only
// Options.CABundle vouches for (as behind the fetch service, which
// intercepts TLS with its own CA) checks out with the bundle and is
// refused without it.
func TestCheckoutCABundle(t *testing.T) {
	srv := gitserver.Start(t)
	r := srv.NewRepo(t, "app")
	r.WriteFile(t, "version", "1\n")
	commit := r.Commit(t, "first")
	backend, err := url.Parse(srv.HTTPBase)
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(backend))
	t.Cleanup(tlsSrv.Close)
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	repoURL := tlsSrv.URL + "/app.git"

	if _, err := Checkout(context.Background(), Source{Repository: repoURL}, filepath.Join(t.TempDir(), "w"), Options{}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the bundle: err = %v, want a certificate error", err)
	}
	rev, err := Checkout(context.Background(), Source{Repository: repoURL}, filepath.Join(t.TempDir(), "w"), Options{CABundle: bundle})
	if err != nil || rev != commit {
		t.Errorf("with the bundle: %q, %v; want %s", rev, err, commit)
	}
}
