package image_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/slirp-dev/slirp/runtime/image"
	"github.com/slirp-dev/slirp/runtime/image/imagetest"
)

func testImage(tag, cmd string) imagetest.Image {
	return imagetest.Image{
		Layers: []imagetest.Layer{
			{Files: []imagetest.File{imagetest.Dir("etc"), imagetest.Reg("etc/a", "a")}, Compression: "gzip"},
			{Files: []imagetest.File{imagetest.Whiteout("etc", "a")}, Compression: "zstd"},
		},
		Config: v1.ImageConfig{Cmd: []string{cmd}, Env: []string{"X=1"}, WorkingDir: "/w"},
		Tag:    tag,
	}
}

func TestOpenOCI(t *testing.T) {
	dir := t.TempDir()
	if err := imagetest.WriteOCI(dir, testImage("v1", "one"), testImage("v2", "two")); err != nil {
		t.Fatal(err)
	}
	img, err := image.Open(dir + ":v2")
	if err != nil {
		t.Fatal(err)
	}
	if img.Format != "oci" || len(img.Layers) != 2 || img.Config.Cmd[0] != "two" || img.Config.WorkingDir != "/w" {
		t.Fatalf("Open(:v2) = %+v", img)
	}
	if img.Layers[0].MediaType != v1.MediaTypeImageLayerGzip || img.Layers[1].MediaType != v1.MediaTypeImageLayerZstd {
		t.Errorf("media types %q %q", img.Layers[0].MediaType, img.Layers[1].MediaType)
	}
	if _, err := os.Stat(img.Layers[0].Blob); err != nil {
		t.Errorf("layer blob path: %v", err)
	}
	for ref, want := range map[string]string{
		dir:           "name one with PATH:TAG",
		dir + ":v3":   `no manifest tagged "v3"`,
		dir + "/none": "no such file",
	} {
		if _, err := image.Open(ref); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) error %v, want %q", ref, err, want)
		}
	}

	single := t.TempDir()
	if err := imagetest.WriteOCI(single, testImage("", "only")); err != nil {
		t.Fatal(err)
	}
	img, err = image.Open(single)
	if err != nil || img.Config.Cmd[0] != "only" {
		t.Fatalf("Open(single) = %+v, %v", img, err)
	}
}

func TestOpenSkopeoDir(t *testing.T) {
	for _, docker := range []bool{false, true} {
		dir := t.TempDir()
		if err := imagetest.WriteSkopeoDir(dir, testImage("", "x"), docker); err != nil {
			t.Fatal(err)
		}
		img, err := image.Open(dir)
		if err != nil {
			t.Fatalf("docker=%v: %v", docker, err)
		}
		if img.Format != "dir" || len(img.Layers) != 2 || img.Config.Env[0] != "X=1" {
			t.Fatalf("docker=%v: %+v", docker, img)
		}
		if _, err := image.Open(dir + ":tag"); err == nil {
			t.Errorf("a tag on a dir: folder should be refused")
		}
	}
}

func TestOpenRejectsCorruption(t *testing.T) {
	dir := t.TempDir()
	if err := imagetest.WriteSkopeoDir(dir, testImage("", "x"), false); err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, m.Config.Digest.Encoded())
	cb, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, append(cb[:len(cb)-1], ' ', '}'), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := image.Open(dir); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("tampered config: %v", err)
	}
}

func TestOpenFollowsPlatformIndex(t *testing.T) {
	dir := t.TempDir()
	if err := imagetest.WriteOCI(dir, testImage("", "native")); err != nil {
		t.Fatal(err)
	}
	// Wrap the manifest in a nested index with a foreign platform next to
	// the native one, as multi-arch images are.
	var idx v1.Index
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	native := idx.Manifests[0]
	foreign := native
	foreign.Digest = digest.FromString("other")
	foreign.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
	native.Platform = &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	nested := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{foreign, native}}
	nested.SchemaVersion = 2
	nb, _ := json.Marshal(nested)
	nd := digest.FromBytes(nb)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", nd.Encoded()), nb, 0o644); err != nil {
		t.Fatal(err)
	}
	top := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{
		{MediaType: v1.MediaTypeImageIndex, Digest: nd, Size: int64(len(nb)), Annotations: map[string]string{v1.AnnotationRefName: "multi"}},
		{MediaType: "application/vnd.example.unknown", Digest: digest.FromString("x"), Size: 1},
	}}
	top.SchemaVersion = 2
	tb, _ := json.Marshal(top)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), tb, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := image.Open(dir + ":multi")
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest != native.Digest || got.Config.Cmd[0] != "native" {
		t.Fatalf("picked %s, want the native manifest %s", got.Manifest, native.Digest)
	}
}

func FuzzSelectManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}`), "v1")
	f.Add([]byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:00","size":-1}]}`), "")
	f.Fuzz(func(t *testing.T, index []byte, tag string) {
		dir := t.TempDir()
		d, err := image.SelectManifest(index, tag, func(d digest.Digest) (string, error) {
			return filepath.Join(dir, d.Encoded()), nil
		})
		if err == nil && d.Digest.Validate() != nil {
			t.Fatalf("selected a descriptor without a valid digest (%q) from %q", d.Digest, index)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"layers":[]}`))
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _, err := image.ParseManifest(b)
		if err != nil {
			return
		}
		if m.Config.Digest.Validate() != nil {
			t.Fatalf("accepted a manifest with an invalid config digest: %q", b)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"os":"linux","config":{"Env":["A=1"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = image.ParseConfig(b)
	})
}
