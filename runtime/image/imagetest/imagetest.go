// Package imagetest builds small container images on disk for tests,
// offline and deterministically: tar layers written in Go (whiteouts
// included), optionally gzip- or zstd-compressed, with their digests and
// diff_ids computed here, stored as an OCI image layout or as a skopeo
// dir: folder.
package imagetest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Epoch is the fixed modification time of generated entries.
var Epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// File is one tar entry.
type File struct {
	Name string
	// Type is a tar type flag; 0 means a regular file.
	Type     byte
	Mode     int64
	Body     []byte
	Linkname string
	UID, GID int
	Xattrs   map[string]string
}

// Dir, Reg, Symlink, Hardlink and Whiteout are shorthands for File.
func Dir(name string) File { return File{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func Reg(name, body string) File {
	return File{Name: name, Type: tar.TypeReg, Mode: 0o644, Body: []byte(body)}
}
func Symlink(name, target string) File {
	return File{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}
func Hardlink(name, target string) File {
	return File{Name: name, Type: tar.TypeLink, Mode: 0o644, Linkname: target}
}
func Whiteout(dir, name string) File { return Reg(filepath.Join(dir, ".wh."+name), "") }
func Opaque(dir string) File         { return Reg(filepath.Join(dir, ".wh..wh..opq"), "") }

// Tar writes files as an uncompressed tar.
func Tar(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{
			Name: f.Name, Typeflag: typ, Mode: f.Mode, Uid: f.UID, Gid: f.GID,
			Linkname: f.Linkname, ModTime: Epoch, Format: tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		for k, v := range f.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer is one image layer.
type Layer struct {
	Files []File
	// Compression is "", "gzip" or "zstd".
	Compression string
}

// Image is an image to write.
type Image struct {
	Layers []Layer
	Config v1.ImageConfig
	// Tag names the image in an OCI layout's index.json.
	Tag string
}

type blob struct {
	desc v1.Descriptor
	data []byte
}

// built is an image turned into blobs.
type built struct {
	layers   []blob
	config   blob
	manifest blob
}

func build(img Image, docker bool) (*built, error) {
	b := &built{}
	var diffIDs []digest.Digest
	for _, l := range img.Layers {
		raw, err := Tar(l.Files)
		if err != nil {
			return nil, err
		}
		diffIDs = append(diffIDs, digest.FromBytes(raw))
		data := raw
		mt := v1.MediaTypeImageLayer
		switch l.Compression {
		case "gzip":
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(raw)
			_ = zw.Close()
			data, mt = buf.Bytes(), v1.MediaTypeImageLayerGzip
			if docker {
				mt = "application/vnd.docker.image.rootfs.diff.tar.gzip"
			}
		case "zstd":
			zw, err := zstd.NewWriter(nil)
			if err != nil {
				return nil, err
			}
			data, mt = zw.EncodeAll(raw, nil), v1.MediaTypeImageLayerZstd
			_ = zw.Close()
		case "":
			if docker {
				mt = "application/vnd.docker.image.rootfs.diff.tar"
			}
		default:
			return nil, fmt.Errorf("compression %q", l.Compression)
		}
		b.layers = append(b.layers, blob{desc: v1.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data})
	}
	cfg := v1.Image{
		Platform: v1.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH},
		Config:   img.Config,
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	created := Epoch
	cfg.Created = &created
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmt := v1.MediaTypeImageConfig
	mmt := v1.MediaTypeImageManifest
	if docker {
		cmt = "application/vnd.docker.container.image.v1+json"
		mmt = "application/vnd.docker.distribution.manifest.v2+json"
	}
	b.config = blob{desc: v1.Descriptor{MediaType: cmt, Digest: digest.FromBytes(cb), Size: int64(len(cb))}, data: cb}
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mmt, Config: b.config.desc}
	for _, l := range b.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	b.manifest = blob{desc: v1.Descriptor{MediaType: mmt, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, data: mb}
	return b, nil
}

// WriteOCI writes images into an OCI image layout at dir.
func WriteOCI(dir string, imgs ...Image) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	put := func(b blob) error {
		return os.WriteFile(filepath.Join(blobs, b.desc.Digest.Encoded()), b.data, 0o644)
	}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	for _, img := range imgs {
		b, err := build(img, false)
		if err != nil {
			return err
		}
		for _, l := range b.layers {
			if err := put(l); err != nil {
				return err
			}
		}
		if err := put(b.config); err != nil {
			return err
		}
		if err := put(b.manifest); err != nil {
			return err
		}
		d := b.manifest.desc
		if img.Tag != "" {
			d.Annotations = map[string]string{v1.AnnotationRefName: img.Tag}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// WriteSkopeoDir writes img the way `skopeo copy ... dir:DIR` does (with
// Docker schema 2 media types when docker is set).
func WriteSkopeoDir(dir string, img Image, docker bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := build(img, docker)
	if err != nil {
		return err
	}
	for _, bl := range append(b.layers, b.config) {
		if err := os.WriteFile(filepath.Join(dir, bl.desc.Digest.Encoded()), bl.data, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b.manifest.data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "version"), []byte("Directory Transport Version: 1.1\n"), 0o644)
}

// Busybox returns the entries of a minimal busybox-static tree: the
// binary from the host's busybox-static package, one symlink per applet
// named, and /etc/passwd and /etc/group with root and a user 1000.
func Busybox(applets ...string) ([]File, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("needs busybox-static (/bin/busybox): %w", err)
	}
	files := []File{
		Dir("bin"), Dir("etc"), Dir("root"), Dir("tmp"), Dir("proc"), Dir("dev"), Dir("sys"),
		{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Body: bin},
		Reg("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"),
		Reg("etc/group", "root:x:0:\ntty:x:5:\nuser:x:1000:\nextra:x:2000:user\n"),
	}
	for _, a := range applets {
		files = append(files, Symlink("bin/"+a, "busybox"))
	}
	return files, nil
}

// WriteTree writes files as a plain directory tree at dir (for --rootfs).
// Owners are left as they are (the caller's).
func WriteTree(dir string, files []File) error {
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch f.Type {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(f.Mode)); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(f.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dir, f.Linkname), p); err != nil {
				return err
			}
		default:
			if err := os.WriteFile(p, f.Body, os.FileMode(f.Mode)); err != nil {
				return err
			}
		}
	}
	return nil
}
