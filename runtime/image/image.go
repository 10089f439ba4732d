// Package image reads container images stored on local disk: OCI image
// layouts (oci-layout, index.json, blobs/) and the folders `skopeo copy ...
// dir:` writes (version, manifest.json, blobs named by their hex digest).
//
// It resolves a reference to one manifest, verifies the manifest and config
// against their digests, and lists the layers with their compressed digest
// and the diff_id of the uncompressed tar, so that layers can be unpacked and
// verified while streaming (package layer does that).
package image

import (
	"bytes"
	_ "crypto/sha256" // registers sha256 for go-digest
	_ "crypto/sha512" // registers sha512 for go-digest
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker schema 2 media types (what `skopeo copy --format v2s2` writes).
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerTar     = "application/vnd.docker.image.rootfs.diff.tar"
)

// maxMetadataSize caps index, manifest and config files: they are JSON
// documents of a few KiB, and reading an untrusted one whole must not
// exhaust memory.
const maxMetadataSize = 8 << 20

// Layer is one layer of an image, bottom first in Image.Layers.
type Layer struct {
	// Blob is the path of the (possibly compressed) layer file.
	Blob      string        `json:"blob"`
	MediaType string        `json:"media_type"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	// DiffID is the digest of the uncompressed tar.
	DiffID digest.Digest `json:"diff_id"`
}

// Image is a resolved image: its runtime config and its layers.
type Image struct {
	// Ref is the reference it was opened with.
	Ref string
	// Format is "oci" or "dir".
	Format string
	// Manifest is the digest of the chosen manifest.
	Manifest digest.Digest
	Config   v1.ImageConfig
	Layers   []Layer
}

// Open resolves ref, PATH[:TAG], to one image. A layout with a single
// manifest needs no tag.
func Open(ref string) (*Image, error) {
	dir, tag := splitRef(ref)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("image %s: %s is not a directory (want an OCI image layout or a skopeo dir: folder)", ref, dir)
	}
	var img *Image
	switch {
	case exists(filepath.Join(dir, v1.ImageLayoutFile)):
		img, err = openLayout(dir, tag)
	case exists(filepath.Join(dir, "manifest.json")):
		if tag != "" {
			return nil, fmt.Errorf("image %s: a skopeo dir: folder holds one image; drop the :%s tag", ref, tag)
		}
		img, err = openDir(dir)
	default:
		return nil, fmt.Errorf("image %s: %s has neither oci-layout nor manifest.json (want an OCI image layout or a skopeo dir: folder)", ref, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	img.Ref = ref
	return img, nil
}

// splitRef splits PATH[:TAG]. A colon belongs to the path when the whole
// string names an existing directory or the part after it contains a slash.
func splitRef(ref string) (dir, tag string) {
	if exists(ref) {
		return ref, ""
	}
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i+1:], "/") {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// blobStore finds blobs by digest.
type blobStore func(d digest.Digest) (string, error)

func layoutBlobs(dir string) blobStore {
	return func(d digest.Digest) (string, error) {
		if err := d.Validate(); err != nil {
			return "", fmt.Errorf("digest %q: %w", d, err)
		}
		return filepath.Join(dir, v1.ImageBlobsDir, d.Algorithm().String(), d.Encoded()), nil
	}
}

func dirBlobs(dir string) blobStore {
	return func(d digest.Digest) (string, error) {
		if err := d.Validate(); err != nil {
			return "", fmt.Errorf("digest %q: %w", d, err)
		}
		p := filepath.Join(dir, d.Encoded())
		if exists(p) {
			return p, nil
		}
		// Directory Transport Version 1.0 named layers <hex>.tar.
		if exists(p + ".tar") {
			return p + ".tar", nil
		}
		return p, nil
	}
}

// readVerified reads a small blob and checks it against desc.
func readVerified(path string, desc v1.Descriptor) ([]byte, error) {
	if desc.Size > maxMetadataSize {
		return nil, fmt.Errorf("blob %s: size %d is too large for metadata", desc.Digest, desc.Size)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if err := verify(b, desc); err != nil {
		return nil, err
	}
	return b, nil
}

func verify(b []byte, desc v1.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	if desc.Size >= 0 && int64(len(b)) != desc.Size {
		return fmt.Errorf("blob %s: size is %d, descriptor says %d", desc.Digest, len(b), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return fmt.Errorf("blob %s: content has digest %s", desc.Digest, got)
	}
	return nil
}

func openLayout(dir, tag string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, v1.ImageLayoutFile))
	if err != nil {
		return nil, err
	}
	var lay v1.ImageLayout
	if err := json.Unmarshal(b, &lay); err != nil {
		return nil, fmt.Errorf("parse oci-layout: %w", err)
	}
	if lay.Version != v1.ImageLayoutVersion {
		return nil, fmt.Errorf("oci-layout version %q, want %q", lay.Version, v1.ImageLayoutVersion)
	}
	idxBytes, err := readLimited(filepath.Join(dir, v1.ImageIndexFile))
	if err != nil {
		return nil, err
	}
	blobs := layoutBlobs(dir)
	desc, err := SelectManifest(idxBytes, tag, blobs)
	if err != nil {
		return nil, err
	}
	img, err := loadManifest(desc, blobs)
	if err != nil {
		return nil, err
	}
	img.Format = "oci"
	return img, nil
}

func openDir(dir string) (*Image, error) {
	v, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return nil, fmt.Errorf("not a skopeo dir: folder: %w", err)
	}
	if s := string(v); !strings.HasPrefix(s, "Directory Transport Version: 1.") {
		return nil, fmt.Errorf("skopeo dir: version %q is not supported (want 1.x)", strings.TrimSpace(s))
	}
	mb, err := readLimited(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	blobs := dirBlobs(dir)
	mt := sniffMediaType(mb)
	desc := v1.Descriptor{MediaType: mt, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if mt == v1.MediaTypeImageIndex || mt == MediaTypeDockerManifestList {
		// skopeo copy --all: manifest.json is the list and every instance
		// sits beside it as <hex>.manifest.json.
		desc, err = selectFromIndex(mb, "", func(d digest.Digest) (string, error) {
			return filepath.Join(dir, d.Encoded()+".manifest.json"), nil
		})
		if err != nil {
			return nil, err
		}
		blobs = func(d digest.Digest) (string, error) {
			if d == desc.Digest {
				return filepath.Join(dir, d.Encoded()+".manifest.json"), nil
			}
			return dirBlobs(dir)(d)
		}
		img, err := loadManifest(desc, blobs)
		if err != nil {
			return nil, err
		}
		img.Format = "dir"
		return img, nil
	}
	img, err := parseManifest(mb, desc.Digest, blobs)
	if err != nil {
		return nil, err
	}
	img.Format = "dir"
	return img, nil
}

func readLimited(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(b) > maxMetadataSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, maxMetadataSize)
	}
	return b, nil
}

func sniffMediaType(b []byte) string {
	var probe struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	_ = json.Unmarshal(b, &probe)
	if probe.MediaType != "" {
		return probe.MediaType
	}
	if probe.Manifests != nil {
		return v1.MediaTypeImageIndex
	}
	return v1.MediaTypeImageManifest
}

// SelectManifest picks the manifest descriptor for tag from an image index
// (index.json). With no tag, the index must hold exactly one image. Nested
// indexes (multi-platform images) are followed, choosing the entry for this
// machine's platform.
func SelectManifest(index []byte, tag string, blobs func(digest.Digest) (string, error)) (v1.Descriptor, error) {
	return selectFromIndex(index, tag, blobs)
}

func selectFromIndex(index []byte, tag string, blobs blobStore) (v1.Descriptor, error) {
	var idx v1.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return v1.Descriptor{}, fmt.Errorf("parse image index: %w", err)
	}
	var cands []v1.Descriptor
	for _, d := range idx.Manifests {
		if !isManifest(d.MediaType) && !isIndex(d.MediaType) {
			continue // unknown media types are skipped, not errors
		}
		if tag != "" && d.Annotations[v1.AnnotationRefName] != tag {
			continue
		}
		cands = append(cands, d)
	}
	if len(cands) == 0 {
		if tag != "" {
			return v1.Descriptor{}, fmt.Errorf("no manifest tagged %q in the index (tags: %s)", tag, strings.Join(tags(idx), ", "))
		}
		return v1.Descriptor{}, errors.New("the image index lists no manifest")
	}
	if len(cands) > 1 {
		if plat := matchPlatform(cands); plat != nil {
			cands = []v1.Descriptor{*plat}
		} else if tag == "" {
			return v1.Descriptor{}, fmt.Errorf("the index holds %d images; name one with PATH:TAG (tags: %s)", len(cands), strings.Join(tags(idx), ", "))
		} else {
			return v1.Descriptor{}, fmt.Errorf("%d manifests are tagged %q", len(cands), tag)
		}
	}
	d := cands[0]
	if err := d.Digest.Validate(); err != nil {
		return v1.Descriptor{}, fmt.Errorf("image index: manifest %q has no valid digest (%v); the layout is damaged, copy the image again", d.Digest, err)
	}
	if isIndex(d.MediaType) {
		p, err := blobs(d.Digest)
		if err != nil {
			return v1.Descriptor{}, err
		}
		nested, err := readVerified(p, d)
		if err != nil {
			return v1.Descriptor{}, err
		}
		var n v1.Index
		if err := json.Unmarshal(nested, &n); err != nil {
			return v1.Descriptor{}, fmt.Errorf("parse nested index %s: %w", d.Digest, err)
		}
		var ms []v1.Descriptor
		for _, m := range n.Manifests {
			if isManifest(m.MediaType) {
				ms = append(ms, m)
			}
		}
		plat := matchPlatform(ms)
		if plat == nil {
			return v1.Descriptor{}, fmt.Errorf("index %s has no manifest for %s/%s", d.Digest, goruntime.GOOS, goruntime.GOARCH)
		}
		if err := plat.Digest.Validate(); err != nil {
			return v1.Descriptor{}, fmt.Errorf("index %s: manifest %q has no valid digest (%v); the layout is damaged, copy the image again", d.Digest, plat.Digest, err)
		}
		return *plat, nil
	}
	return d, nil
}

func tags(idx v1.Index) []string {
	var out []string
	for _, d := range idx.Manifests {
		if t := d.Annotations[v1.AnnotationRefName]; t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

func matchPlatform(ds []v1.Descriptor) *v1.Descriptor {
	for i, d := range ds {
		if d.Platform != nil && d.Platform.OS == goruntime.GOOS && d.Platform.Architecture == goruntime.GOARCH {
			return &ds[i]
		}
	}
	return nil
}

func isManifest(mt string) bool {
	return mt == v1.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isIndex(mt string) bool {
	return mt == v1.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func loadManifest(desc v1.Descriptor, blobs blobStore) (*Image, error) {
	p, err := blobs(desc.Digest)
	if err != nil {
		return nil, err
	}
	b, err := readVerified(p, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return parseManifest(b, desc.Digest, blobs)
}

func parseManifest(b []byte, d digest.Digest, blobs blobStore) (*Image, error) {
	m, _, err := ParseManifest(b)
	if err != nil {
		return nil, err
	}
	p, err := blobs(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cb, err := readVerified(p, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	conf, err := ParseConfig(cb)
	if err != nil {
		return nil, err
	}
	if len(conf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest lists %d layers but the config has %d diff_ids", len(m.Layers), len(conf.RootFS.DiffIDs))
	}
	img := &Image{Manifest: d, Config: conf.Config}
	for i, l := range m.Layers {
		if !LayerMediaTypeSupported(l.MediaType) {
			return nil, fmt.Errorf("layer %s: media type %q is not supported", l.Digest, l.MediaType)
		}
		bp, err := blobs(l.Digest)
		if err != nil {
			return nil, err
		}
		if err := conf.RootFS.DiffIDs[i].Validate(); err != nil {
			return nil, fmt.Errorf("config diff_id %d: %w", i, err)
		}
		img.Layers = append(img.Layers, Layer{
			Blob: bp, MediaType: l.MediaType, Digest: l.Digest, Size: l.Size, DiffID: conf.RootFS.DiffIDs[i],
		})
	}
	return img, nil
}

// ParseManifest parses an OCI or Docker schema 2 image manifest and checks
// the fields the launcher relies on.
func ParseManifest(b []byte) (v1.Manifest, string, error) {
	var m v1.Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return m, "", fmt.Errorf("parse manifest: %w", err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = v1.MediaTypeImageManifest
	}
	if !isManifest(mt) {
		return m, "", fmt.Errorf("manifest media type %q is not an image manifest", mt)
	}
	if m.SchemaVersion != 2 {
		return m, "", fmt.Errorf("manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return m, "", fmt.Errorf("manifest config digest: %w", err)
	}
	for _, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return m, "", fmt.Errorf("manifest layer digest %q: %w", l.Digest, err)
		}
	}
	return m, mt, nil
}

// ParseConfig parses an OCI or Docker image config.
func ParseConfig(b []byte) (v1.Image, error) {
	var c v1.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse image config: %w", err)
	}
	if c.OS != "" && c.OS != goruntime.GOOS {
		return c, fmt.Errorf("image is for %s, this machine runs %s", c.OS, goruntime.GOOS)
	}
	if c.Architecture != "" && c.Architecture != goruntime.GOARCH {
		return c, fmt.Errorf("image is for %s, this machine is %s", c.Architecture, goruntime.GOARCH)
	}
	return c, nil
}

// LayerMediaTypeSupported reports whether a layer of this media type can be
// unpacked.
func LayerMediaTypeSupported(mt string) bool {
	switch mt {
	case v1.MediaTypeImageLayer, v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd,
		v1.MediaTypeImageLayerNonDistributable, v1.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still found in the wild
		v1.MediaTypeImageLayerNonDistributableZstd, //nolint:staticcheck
		MediaTypeDockerLayerGzip, MediaTypeDockerLayerTar:
		return true
	}
	return false
}
