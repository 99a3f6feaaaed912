package lxd

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	lxdclient "github.com/canonical/lxd/client"
	"github.com/canonical/lxd/shared/api"
	"github.com/gorilla/websocket"
)

// fakeServer is an in-memory LXD with just the objects the host logic
// touches. Methods not implemented panic through the nil embedded interface.
type fakeServer struct {
	server
	mu        sync.Mutex
	pools     map[string]api.StoragePool
	networks  map[string]api.Network
	profiles  map[string]api.Profile
	images    map[string]api.Image
	aliases   map[string]api.ImageAliasesEntry
	instances map[string]api.Instance
	calls     []string
	// uploads holds each uploaded image's members, in order.
	uploads [][]string
	// uploadErr, if set, is returned by CreateImage after reading the body.
	uploadErr error
}

func newFakeServer() *fakeServer {
	return &fakeServer{
		pools:     map[string]api.StoragePool{},
		networks:  map[string]api.Network{},
		profiles:  map[string]api.Profile{},
		images:    map[string]api.Image{},
		aliases:   map[string]api.ImageAliasesEntry{},
		instances: map[string]api.Instance{},
	}
}

func notFound() error { return api.StatusErrorf(http.StatusNotFound, "not found") }

func (f *fakeServer) call(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

type fakeOp struct {
	op  api.Operation
	err error
}

func (o *fakeOp) AddHandler(func(api.Operation)) (*lxdclient.EventTarget, error) { return nil, nil }
func (o *fakeOp) Cancel() error                                                  { return nil }
func (o *fakeOp) Get() api.Operation                                             { return o.op }
func (o *fakeOp) GetWebsocket(string) (*websocket.Conn, error) {
	return nil, errors.New("no websockets in the fake")
}
func (o *fakeOp) RemoveHandler(*lxdclient.EventTarget) error { return nil }
func (o *fakeOp) Refresh() error                             { return nil }
func (o *fakeOp) Wait() error                                { return o.err }
func (o *fakeOp) WaitContext(context.Context) error          { return o.err }

func done(md map[string]any) lxdclient.Operation {
	return &fakeOp{op: api.Operation{Metadata: md}}
}

func (f *fakeServer) Disconnect() {}

func (f *fakeServer) GetStoragePool(name string) (*api.StoragePool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pools[name]
	if !ok {
		return nil, "", notFound()
	}
	return &p, "", nil
}

func (f *fakeServer) CreateStoragePool(p api.StoragePoolsPost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateStoragePool %s", p.Name)
	f.pools[p.Name] = api.StoragePool{Name: p.Name, Driver: p.Driver}
	return nil
}

func (f *fakeServer) GetNetwork(name string) (*api.Network, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.networks[name]
	if !ok {
		return nil, "", notFound()
	}
	n.Config = copyMap(n.Config)
	return &n, "", nil
}

func (f *fakeServer) CreateNetwork(n api.NetworksPost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateNetwork %s", n.Name)
	f.networks[n.Name] = api.Network{Name: n.Name, Type: n.Type, Managed: true, Config: copyMap(n.Config)}
	return nil
}

func (f *fakeServer) UpdateNetwork(name string, put api.NetworkPut, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("UpdateNetwork %s", name)
	n := f.networks[name]
	n.Config = copyMap(put.Config)
	f.networks[name] = n
	return nil
}

func (f *fakeServer) GetProfiles() ([]api.Profile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Profile
	for _, p := range f.profiles {
		out = append(out, p)
	}
	return out, nil
}

func (f *fakeServer) GetProfile(name string) (*api.Profile, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.profiles[name]
	if !ok {
		return nil, "", notFound()
	}
	p.Config, p.Devices = copyMap(p.Config), copyDevices(p.Devices)
	return &p, "", nil
}

func (f *fakeServer) CreateProfile(p api.ProfilesPost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateProfile %s", p.Name)
	f.profiles[p.Name] = api.Profile{Name: p.Name, Description: p.Description, Config: copyMap(p.Config), Devices: copyDevices(p.Devices)}
	return nil
}

func (f *fakeServer) UpdateProfile(name string, put api.ProfilePut, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("UpdateProfile %s", name)
	p := f.profiles[name]
	p.Description, p.Config, p.Devices = put.Description, copyMap(put.Config), copyDevices(put.Devices)
	f.profiles[name] = p
	return nil
}

func (f *fakeServer) DeleteProfile(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("DeleteProfile %s", name)
	delete(f.profiles, name)
	return nil
}

func (f *fakeServer) GetImages() ([]api.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Image
	for _, img := range f.images {
		out = append(out, img)
	}
	return out, nil
}

// CreateImage reads the whole upload (as LXD does), records the members and
// stores an image with metadata.yaml's properties plus the request's.
func (f *fakeServer) CreateImage(post api.ImagesPost, args *lxdclient.ImageCreateArgs) (lxdclient.Operation, error) {
	tr := tar.NewReader(args.MetaFile)
	var names []string
	props := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		names = append(names, h.Name)
		if h.Name == "metadata.yaml" {
			var meta imageMetadata
			data, _ := io.ReadAll(tr)
			if err := json.Unmarshal(data, &meta); err != nil {
				return nil, err
			}
			for k, v := range meta.Properties {
				props[k] = v
			}
		}
	}
	if _, err := io.Copy(io.Discard, args.MetaFile); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateImage")
	if f.uploadErr != nil {
		return nil, f.uploadErr
	}
	for k, v := range post.Properties {
		props[k] = v
	}
	f.uploads = append(f.uploads, names)
	fp := fmt.Sprintf("%064x", len(f.uploads))
	f.images[fp] = api.Image{Fingerprint: fp, Properties: props}
	return done(map[string]any{"fingerprint": fp}), nil
}

func (f *fakeServer) DeleteImage(fp string) (lxdclient.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("DeleteImage %.8s", fp)
	delete(f.images, fp)
	return done(nil), nil
}

func (f *fakeServer) GetImageAlias(name string) (*api.ImageAliasesEntry, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.aliases[name]
	if !ok {
		return nil, "", notFound()
	}
	return &a, "", nil
}

func (f *fakeServer) CreateImageAlias(a api.ImageAliasesPost) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateImageAlias %s", a.Name)
	f.aliases[a.Name] = a.ImageAliasesEntry
	return nil
}

func (f *fakeServer) UpdateImageAlias(name string, put api.ImageAliasesEntryPut, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("UpdateImageAlias %s", name)
	a := f.aliases[name]
	a.Target = put.Target
	f.aliases[name] = a
	return nil
}

func (f *fakeServer) GetInstances(api.InstanceType) ([]api.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Instance
	for _, i := range f.instances {
		out = append(out, i)
	}
	return out, nil
}

func (f *fakeServer) GetInstance(name string) (*api.Instance, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.instances[name]
	if !ok {
		return nil, "", notFound()
	}
	return &i, "", nil
}

func (f *fakeServer) UpdateInstanceState(name string, st api.InstanceStatePut, _ string) (lxdclient.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("UpdateInstanceState %s %s force=%v", name, st.Action, st.Force)
	i, ok := f.instances[name]
	if !ok {
		return nil, notFound()
	}
	if st.Action == "stop" {
		i.StatusCode, i.Status = api.Stopped, "Stopped"
	}
	f.instances[name] = i
	return done(nil), nil
}

func (f *fakeServer) DeleteInstance(name string) (lxdclient.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("DeleteInstance %s", name)
	delete(f.instances, name)
	return done(nil), nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func copyDevices(m map[string]map[string]string) map[string]map[string]string {
	out := make(map[string]map[string]string, len(m))
	for k, v := range m {
		out[k] = copyMap(v)
	}
	return out
}
