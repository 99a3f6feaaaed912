package lxd

import (
	"context"
	"fmt"
	"io"
	"net/http"
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
