package lxd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
)

// server is the slice of lxd.InstanceServer the agent uses. Going through it
// (rather than the whole InstanceServer) keeps the fake in the unit tests
// small and makes what the agent asks of LXD reviewable in one place.
type server interface {
	GetServer() (*api.Server, string, error)
	Disconnect()

	GetStoragePool(name string) (*api.StoragePool, string, error)
	CreateStoragePool(pool api.StoragePoolsPost) error

	GetNetwork(name string) (*api.Network, string, error)
	CreateNetwork(network api.NetworksPost) error
	UpdateNetwork(name string, network api.NetworkPut, ETag string) error

	GetProfiles() ([]api.Profile, error)
	GetProfile(name string) (*api.Profile, string, error)
	CreateProfile(profile api.ProfilesPost) error
	UpdateProfile(name string, profile api.ProfilePut, ETag string) error
	DeleteProfile(name string) error

	GetImages() ([]api.Image, error)
	CreateImage(image api.ImagesPost, args *lxdclient.ImageCreateArgs) (lxdclient.Operation, error)
	DeleteImage(fingerprint string) (lxdclient.Operation, error)
	GetImageAlias(name string) (*api.ImageAliasesEntry, string, error)
	CreateImageAlias(alias api.ImageAliasesPost) error
	UpdateImageAlias(name string, alias api.ImageAliasesEntryPut, ETag string) error

	GetInstances(instanceType api.InstanceType) ([]api.Instance, error)
	GetInstance(name string) (*api.Instance, string, error)
	CreateInstance(instance api.InstancesPost) (lxdclient.Operation, error)
	UpdateInstanceState(name string, state api.InstanceStatePut, ETag string) (lxdclient.Operation, error)
	DeleteInstance(name string) (lxdclient.Operation, error)
	ExecInstance(instanceName string, exec api.InstanceExecPost, args *lxdclient.InstanceExecArgs) (lxdclient.Operation, error)
	GetInstanceFile(instanceName string, path string) (io.ReadCloser, *lxdclient.InstanceFileResponse, error)
	CreateInstanceFile(instanceName string, path string, args lxdclient.InstanceFileArgs) error
	DeleteInstanceFile(instanceName string, path string) error
}

// The real client satisfies server.
var _ server = lxdclient.InstanceServer(nil)

// isNotFound reports whether err is LXD's 404.
func isNotFound(err error) bool {
	return err != nil && api.StatusErrorCheck(err, http.StatusNotFound)
}

// isConflict reports whether err says the object already exists. LXD 5.0
// answers some of these with 409 and some (images, profiles) with 400/500
// and a message, so the message is checked too.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	if api.StatusErrorCheck(err, http.StatusConflict) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "already exists") || strings.Contains(msg, "same fingerprint")
}

// waitOp waits for an LXD operation, honouring ctx.
func waitOp(ctx context.Context, op lxdclient.Operation, err error) error {
	if err != nil {
		return err
	}
	return op.WaitContext(ctx)
}

// Ping asks the LXD daemon for its server record: whether the backend is
// reachable now (for /healthz). A daemon that does not answer within ctx
// is unreachable.
func (h *Host) Ping(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		_, _, err := h.srv.GetServer()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("LXD does not answer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("LXD does not answer: %w", ctx.Err())
	}
}

// RemoteTLS is how the agent authenticates to a remote LXD and checks
// it: PEM files of the client certificate and key that the remote trusts
// (`lxc config trust add`), and of the remote's own certificate, pinned
// ("" trusts the system's CAs, for a remote with a CA-signed certificate).
type RemoteTLS struct {
	ClientCert, ClientKey, ServerCert string
}

// ErrCertificate marks a remote LXD connection refused for its
// certificates (unreadable, not matching, not trusted): a configuration
// mistake to stop at, not an outage to wait out.
var ErrCertificate = errors.New("LXD certificate problem")

// connect opens the LXD client: the unix socket, or the remote over TLS
// with the LXD client's own connection arguments. A remote connection is
// checked to be trusted, since LXD accepts an unknown client certificate
// and then answers every call but GET /1.0 with 403.
func connect(ctx context.Context, cfg Config) (lxdclient.InstanceServer, error) {
	if cfg.RemoteURL == "" {
		return lxdclient.ConnectLXDUnixWithContext(ctx, cfg.Socket, nil)
	}
	args := &lxdclient.ConnectionArgs{UserAgent: "buildd-agent"}
	for _, f := range []struct {
		key, path string
		dst       *string
	}{
		{"tls_client_cert", cfg.TLS.ClientCert, &args.TLSClientCert},
		{"tls_client_key", cfg.TLS.ClientKey, &args.TLSClientKey},
		{"tls_server_cert", cfg.TLS.ServerCert, &args.TLSServerCert},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("%w: [lxd] %s: %w", ErrCertificate, f.key, err)
		}
		if blk, _ := pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("%w: [lxd] %s: %s holds no PEM block", ErrCertificate, f.key, f.path)
		}
		*f.dst = string(b)
	}
	if args.TLSClientCert == "" || args.TLSClientKey == "" {
		return nil, fmt.Errorf("%w: a remote LXD (%s) needs [lxd] tls_client_cert and tls_client_key", ErrCertificate, cfg.RemoteURL)
	}
	if _, err := tls.X509KeyPair([]byte(args.TLSClientCert), []byte(args.TLSClientKey)); err != nil {
		return nil, fmt.Errorf("%w: [lxd] tls_client_cert %s and tls_client_key %s do not make a key pair: %w",
			ErrCertificate, cfg.TLS.ClientCert, cfg.TLS.ClientKey, err)
	}
	c, err := lxdclient.ConnectLXDWithContext(ctx, cfg.RemoteURL, args)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		var unknown x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &hostErr) ||
			strings.Contains(err.Error(), "certificate") {
			return nil, fmt.Errorf("%w: the LXD server at %s does not present the certificate in [lxd] tls_server_cert (%s); "+
				"copy the server's certificate (server.crt in its LXD directory): %w", ErrCertificate, cfg.RemoteURL, cfg.TLS.ServerCert, err)
		}
		return nil, err
	}
	srv, _, err := c.GetServer()
	if err != nil {
		c.Disconnect()
		return nil, err
	}
	if srv.Auth != "trusted" {
		c.Disconnect()
		return nil, fmt.Errorf("%w: the LXD server at %s does not trust the client certificate [lxd] tls_client_cert (%s); "+
			"on that host run: lxc config trust add %s", ErrCertificate, cfg.RemoteURL, cfg.TLS.ClientCert, filepath.Base(cfg.TLS.ClientCert))
	}
	return c, nil
}
