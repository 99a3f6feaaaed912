package builders

// OCI result gathering, as lpbuildd/oci.py's gatherResults: `docker save`
// read as one stream (never the whole image in memory or on disk), each
// layer directory's layer.tar recompressed straight into the file cache as
// <layer>.tar.gz, the top-level JSON files kept (bounded), then
// manifest.json, each config and digests.json stored.
//
// Everything in the stream is the build's and hostile: entry names are
// checked before any is used as a result name, top-level files are capped
// in size, a layer is stored once, and a symlink may only name another
// layer's layer.tar.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/buildd-agent/buildd-agent/builders/target"
)

var (
	// storageDriverName: a docker storage driver, used in a path.
	storageDriverName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	// diffIDPattern is a config's rootfs.diff_ids element.
	diffIDPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// ociMetaMax caps each top-level file of the save stream (manifest,
// configs, repositories) and each v2 metadata file: they are held in
// memory and parsed.
const ociMetaMax = 8 << 20

// ociStoreFunc stores a result under name (Env.AddWaitingFile).
type ociStoreFunc func(name string, r io.Reader) (string, error)

// ociLayer is one layer directory's result.
type ociLayer struct {
	// GzipSHA256 is the hex sha256 of <dir>.tar.gz as stored.
	GzipSHA256 string
	// TarSHA256 is the hex sha256 of layer.tar (its diff_id).
	TarSHA256 string
}

// ociSave reads one `docker save` stream.
type ociSave struct {
	store ociStoreFunc
	log   io.Writer
	// only, in a second pass, maps layer directories to the names their
	// layer.tar is stored under again (symlinked layers whose target came
	// first); nothing else is stored.
	only map[string]string
	// stored are the names a second pass stored.
	stored []string

	top    map[string][]byte
	layers map[string]ociLayer
	// links maps a layer directory whose layer.tar is a symlink to the
	// directory it points to.
	links map[string]string
	topN  int
}

func newOCISave(store ociStoreFunc, log io.Writer) *ociSave {
	return &ociSave{store: store, log: log, top: map[string][]byte{}, layers: map[string]ociLayer{}, links: map[string]string{}}
}

// ociName checks a name that becomes a result's name: one plain path
// component.
func ociName(n string) error {
	if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00\\") || strings.HasPrefix(n, "-") || strings.HasPrefix(n, ".") || len(n) > 200 {
		return fmt.Errorf("%q is not a plain file name", n)
	}
	return nil
}

// entryPath cleans a tar entry name; absolute names and ".." are refused.
func entryPath(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || strings.HasPrefix(n, "/") || strings.IndexByte(n, 0) >= 0 {
		return "", fmt.Errorf("bad entry name %q", name)
	}
	for _, c := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q leaves the archive", name)
		}
	}
	return path.Clean(n), nil
}

// read processes the stream in order.
func (s *ociSave) read(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read the docker save stream: %w", err)
		}
		name, err := entryPath(h.Name)
		if err != nil {
			return err
		}
		if isSparse(h) {
			// docker never writes sparse members; one declaring a huge
			// size of holes would stream zeros for ever.
			return fmt.Errorf("entry %s is a sparse file", name)
		}
		if s.only == nil {
			fmt.Fprintf(s.log, "Processing tar file: %s\n", name)
		}
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		switch h.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeSymlink:
			if dir == "" || strings.Contains(dir, "/") || base != "layer.tar" {
				continue // only layer symlinks matter
			}
			if err := ociName(dir); err != nil {
				return fmt.Errorf("layer directory: %w", err)
			}
			to, err := entryPath(path.Join(dir, h.Linkname))
			if err != nil || path.Base(to) != "layer.tar" || strings.Count(to, "/") != 1 {
				return fmt.Errorf("layer %s links to %q, not to another layer", dir, h.Linkname)
			}
			if s.only == nil {
				fmt.Fprintf(s.log, "Found symlink at %s referencing %s\n", name, h.Linkname)
				if _, dup := s.links[dir]; dup {
					return fmt.Errorf("layer %s appears twice", dir)
				}
				if _, dup := s.layers[dir]; dup {
					return fmt.Errorf("layer %s appears twice", dir)
				}
				s.links[dir] = path.Dir(to)
			}
		case tar.TypeReg:
			switch {
			case dir == "":
				if s.only != nil {
					continue
				}
				if err := s.keepTop(name, tr, h.Size); err != nil {
					return err
				}
			case !strings.Contains(dir, "/") && base == "layer.tar":
				if err := s.layer(dir, tr); err != nil {
					return err
				}
			}
			// Other files of layer directories (VERSION, json) and
			// anything deeper are not results.
		}
	}
}

// isSparse says whether a member is a GNU or PAX sparse file.
func isSparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// keepTop keeps a top-level file in memory, bounded.
func (s *ociSave) keepTop(name string, r io.Reader, size int64) error {
	if err := ociName(name); err != nil {
		return fmt.Errorf("top-level file: %w", err)
	}
	if size > ociMetaMax {
		return fmt.Errorf("%s is %d bytes, more than the %d a docker save file may have", name, size, ociMetaMax)
	}
	if s.topN++; s.topN > 10000 {
		return errors.New("too many top-level files in the docker save stream")
	}
	data, err := io.ReadAll(io.LimitReader(r, ociMetaMax+1))
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", name, err)
	}
	if _, dup := s.top[name]; dup {
		return fmt.Errorf("%s appears twice", name)
	}
	s.top[name] = data
	return nil
}

// layer recompresses one layer.tar into the file cache, as <dir>.tar.gz
// (or, in a second pass, under the one name only gives it).
func (s *ociSave) layer(dir string, r io.Reader) error {
	if err := ociName(dir); err != nil {
		return fmt.Errorf("layer directory: %w", err)
	}
	name := dir
	if s.only != nil {
		if name = s.only[dir]; name == "" {
			return nil
		}
	} else {
		if _, dup := s.layers[dir]; dup {
			return fmt.Errorf("layer %s appears twice", dir)
		}
		if _, dup := s.links[dir]; dup {
			return fmt.Errorf("layer %s appears twice", dir)
		}
	}
	tarHash, gzHash := sha256.New(), sha256.New()
	pr, pw := io.Pipe()
	go func() {
		gz, err := gzip.NewWriterLevel(io.MultiWriter(pw, gzHash), gzip.DefaultCompression)
		if err == nil {
			_, err = io.Copy(gz, io.TeeReader(r, tarHash))
		}
		if err == nil {
			err = gz.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err := s.store(name+".tar.gz", pr)
	// A store that stopped early unblocks the compressor, which then
	// returns; the tar reader is not used again after an error.
	pr.CloseWithError(errors.New("layer stored"))
	if err != nil {
		return fmt.Errorf("cannot store layer %s: %w", dir, err)
	}
	l := ociLayer{GzipSHA256: hex.EncodeToString(gzHash.Sum(nil)), TarSHA256: hex.EncodeToString(tarHash.Sum(nil))}
	if s.only == nil {
		s.layers[dir] = l
	} else {
		s.stored = append(s.stored, name)
	}
	return nil
}

// pendingLinks says what the next pass stores: one symlinked layer per
// target layer (a stream can be read once, and each name needs the whole
// target), nil when every symlinked layer is stored. A link to a layer
// the stream does not hold, or to another link, is an error.
func (s *ociSave) pendingLinks(done map[string]bool) (map[string]string, error) {
	froms := make([]string, 0, len(s.links))
	for from := range s.links {
		froms = append(froms, from)
	}
	sort.Strings(froms)
	var pending map[string]string
	for _, from := range froms {
		to := s.links[from]
		if _, ok := s.layers[to]; !ok {
			return nil, fmt.Errorf("layer %s links to %s, which the image does not have", from, to)
		}
		if done[from] {
			continue
		}
		if pending == nil {
			pending = map[string]string{}
		}
		if _, busy := pending[to]; !busy {
			pending[to] = from
		}
	}
	return pending, nil
}

// ociManifestSection is one image of manifest.json.
type ociManifestSection struct {
	Config string
	Layers []string
}

// ociV2Metadata is one entry of a v2metadata-by-diffid file.
type ociV2Metadata struct {
	Digest           string
	SourceRepository string
}

// ociDigestEntry is one diff_id's digests.json value.
type ociDigestEntry struct {
	diffID, digest, source, layerID string
}

// ociDigests parses manifest.json and the configs it names and makes
// digests.json as the reference writes it; configs are the config names
// to store, in order. v2 looks up a diff_id's hex in docker's v2 metadata
// (ok false when absent).
func (s *ociSave) ociDigests(v2 func(hexID string) (ociV2Metadata, bool, error)) (digests []byte, configs []string, err error) {
	raw, ok := s.top["manifest.json"]
	if !ok {
		return nil, nil, errors.New("the image has no manifest.json")
	}
	var manifest []ociManifestSection
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, nil, fmt.Errorf("cannot parse manifest.json: %w", err)
	}
	var out strings.Builder
	out.WriteByte('[')
	for i, sec := range manifest {
		if err := ociName(sec.Config); err != nil {
			return nil, nil, fmt.Errorf("manifest section %d: config: %w", i, err)
		}
		cfgRaw, ok := s.top[sec.Config]
		if !ok {
			return nil, nil, fmt.Errorf("manifest section %d: no config file %s in the image", i, sec.Config)
		}
		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
			return nil, nil, fmt.Errorf("cannot parse %s: %w", sec.Config, err)
		}
		configs = append(configs, sec.Config)
		var entries []ociDigestEntry
		index := map[string]int{}
		n := min(len(cfg.RootFS.DiffIDs), len(sec.Layers))
		for j := 0; j < n; j++ {
			diffID := cfg.RootFS.DiffIDs[j]
			if !diffIDPattern.MatchString(diffID) {
				return nil, nil, fmt.Errorf("%s: diff_id %d (%q) is not sha256:<hex>", sec.Config, j, truncateForLog(diffID))
			}
			layerID, _, _ := strings.Cut(sec.Layers[j], "/")
			l, ok := s.layers[layerID]
			if !ok {
				return nil, nil, fmt.Errorf("manifest section %d: layer %q is not in the image", i, truncateForLog(sec.Layers[j]))
			}
			e := ociDigestEntry{diffID: diffID, layerID: layerID, digest: l.GzipSHA256}
			md, ok, err := v2(strings.TrimPrefix(diffID, "sha256:"))
			if err != nil {
				return nil, nil, err
			}
			if ok {
				// Pulled from a registry: keep its digest so that the
				// layer is reused.
				e.digest, e.source = md.Digest, md.SourceRepository
			}
			if k, dup := index[diffID]; dup {
				entries[k].digest, entries[k].source, entries[k].layerID = e.digest, e.source, e.layerID
				continue
			}
			index[diffID] = len(entries)
			entries = append(entries, e)
		}
		if i > 0 {
			out.WriteString(", ")
		}
		out.WriteByte('{')
		for k, e := range entries {
			if k > 0 {
				out.WriteString(", ")
			}
			fmt.Fprintf(&out, "%s: {\"digest\": %s, \"source\": %s, \"layer_id\": %s}",
				PythonJSONString(e.diffID), PythonJSONString(e.digest), PythonJSONString(e.source), PythonJSONString(e.layerID))
		}
		out.WriteByte('}')
	}
	out.WriteByte(']')
	return []byte(out.String()), configs, nil
}

// parseV2Metadata reads a v2metadata-by-diffid file: its first entry, as
// the reference (the most parent image). An empty list is no metadata.
func parseV2Metadata(data []byte) (ociV2Metadata, bool, error) {
	var list []ociV2Metadata
	if err := json.Unmarshal(data, &list); err != nil {
		return ociV2Metadata{}, false, fmt.Errorf("cannot parse docker's v2 metadata: %w", err)
	}
	if len(list) == 0 {
		return ociV2Metadata{}, false, nil
	}
	return list[0], true, nil
}

// saveImage runs `docker save <name>` in the target and feeds its output
// to s.read.
func (m *OCIManager) saveImage(ctx context.Context, b *ContainerBuild, s *ociSave) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type ran struct {
		code int
		err  error
	}
	done := make(chan ran, 1)
	go func() {
		code, err := Run(ctx, b.Target, b.Log, target.Command{Args: []string{"docker", "save", m.args.Name}, Stdout: pw})
		pw.CloseWithError(io.ErrUnexpectedEOF)
		done <- ran{code, err}
	}()
	readErr := s.read(pr)
	if readErr == nil {
		// Trailing bytes after the tar's end: drained, not kept.
		_, readErr = io.Copy(io.Discard, pr)
		if errors.Is(readErr, io.ErrUnexpectedEOF) {
			readErr = nil
		}
	}
	if readErr != nil {
		cancel()
	}
	pr.CloseWithError(errors.New("docker save stream closed"))
	r := <-done
	switch {
	case readErr != nil:
		return readErr
	case r.err != nil:
		return fmt.Errorf("cannot run docker save: %w", r.err)
	case r.code != 0:
		return fmt.Errorf("docker save failed with exit status %d", r.code)
	}
	return nil
}

// gather is oci.py's gatherResults.
func (m *OCIManager) gather(ctx context.Context, b *ContainerBuild) *Failure {
	fail := func(err error) *Failure {
		return b.ctxFail(ctx, BuildPackageFail, "Failed to gather results: %w", err)
	}
	store := func(name string, r io.Reader) (string, error) { return b.Env.AddWaitingFile(name, r) }
	s := newOCISave(store, b.Log)
	if err := m.saveImage(ctx, b, s); err != nil {
		b.Logf("Unable to save image: %v", err)
		return fail(err)
	}
	// The stream cannot be read backwards: a layer that is a symlink to
	// another is stored from a further save, which reads the target again.
	done := map[string]bool{}
	for {
		pending, err := s.pendingLinks(done)
		if err != nil {
			return fail(err)
		}
		if pending == nil {
			break
		}
		b.Logf("Dereferencing %d symlinked layers from another docker save", len(pending))
		s2 := newOCISave(store, io.Discard)
		s2.only = pending
		if err := m.saveImage(ctx, b, s2); err != nil {
			return fail(err)
		}
		if len(s2.stored) != len(pending) {
			return fail(errors.New("the image changed between two docker saves"))
		}
		for to, from := range pending {
			done[from] = true
			s.layers[from] = s.layers[to]
		}
	}
	driver, err := dockerStorageDriver(ctx, b)
	if err != nil {
		return fail(err)
	}
	shaDir := "/var/lib/docker/image/" + driver + "/distribution/v2metadata-by-diffid/sha256"
	if _, err := b.Target.Stat(ctx, shaDir); errors.Is(err, target.ErrNotExist) {
		b.Logf("No metadata directory at %s", shaDir)
	}
	v2 := func(hexID string) (ociV2Metadata, bool, error) {
		p := shaDir + "/" + hexID
		info, err := b.Target.Stat(ctx, p)
		if errors.Is(err, target.ErrNotExist) {
			return ociV2Metadata{}, false, nil
		}
		if err != nil {
			return ociV2Metadata{}, false, err
		}
		if !info.Mode.IsRegular() || info.Size > ociMetaMax {
			return ociV2Metadata{}, false, fmt.Errorf("%s is not a metadata file", p)
		}
		var buf strings.Builder
		if err := b.Target.CopyOut(ctx, p, &limitedWriter{w: &buf, n: ociMetaMax}); err != nil {
			return ociV2Metadata{}, false, fmt.Errorf("cannot read %s: %w", p, err)
		}
		return parseV2Metadata([]byte(buf.String()))
	}
	manifest, ok := s.top["manifest.json"]
	if !ok {
		return fail(errors.New("the image has no manifest.json"))
	}
	if _, err := store("manifest.json", bytes.NewReader(manifest)); err != nil {
		return fail(err)
	}
	digests, configs, err := s.ociDigests(v2)
	if err != nil {
		b.Logf("Failed to parse manifest: %v", err)
		return fail(err)
	}
	for _, c := range configs {
		if _, err := store(c, bytes.NewReader(s.top[c])); err != nil {
			return fail(err)
		}
	}
	if _, err := store("digests.json", bytes.NewReader(digests)); err != nil {
		return fail(err)
	}
	return nil
}

// limitedWriter fails a write past n bytes.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errors.New("file too large")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
