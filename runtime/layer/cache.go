package layer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/slirp-dev/slirp/runtime/image"
)

// Cache holds unpacked layers under Dir/<Key>/<algorithm>/<diff_id hex>.
// Key separates id mappings: the same layer unpacked for a different user
// namespace mapping has different owners.
type Cache struct {
	Dir string
	Key string
	Log *slog.Logger
}

func (c Cache) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Path is where layer l is (or would be) unpacked.
func (c Cache) Path(l image.Layer) string {
	return filepath.Join(c.Dir, c.Key, l.DiffID.Algorithm().String(), l.DiffID.Encoded())
}

// Ensure makes sure every layer is unpacked, bottom first, and returns
// their directories top first, as overlay's lowerdir wants them. reused
// counts the layers that were already in the cache.
func (c Cache) Ensure(layers []image.Layer, opts Options) (dirs []string, reused int, err error) {
	var bottomUp []string
	for _, l := range layers {
		o := opts
		o.Lowers = reverse(bottomUp)
		p, hit, err := c.ensure(l, o)
		if err != nil {
			return nil, 0, err
		}
		if hit {
			reused++
		}
		bottomUp = append(bottomUp, p)
	}
	return reverse(bottomUp), reused, nil
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func (c Cache) ensure(l image.Layer, opts Options) (string, bool, error) {
	if err := l.DiffID.Validate(); err != nil {
		return "", false, fmt.Errorf("layer %s: diff_id: %w", l.Digest, err)
	}
	final := c.Path(l)
	if st, err := os.Stat(final); err == nil && st.IsDir() {
		c.log().Debug("layer cache hit", "diff_id", l.DiffID, "dir", final)
		return final, true, nil
	}
	tmpRoot := filepath.Join(c.Dir, c.Key, "tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		return "", false, fmt.Errorf("layer cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return "", false, fmt.Errorf("layer cache: %w", err)
	}
	tmp := filepath.Join(tmpRoot, l.DiffID.Encoded()+"-"+randHex())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", false, fmt.Errorf("layer cache: %w", err)
	}
	c.log().Debug("unpacking layer", "digest", l.Digest, "diff_id", l.DiffID, "media_type", l.MediaType)
	if err := Unpack(l, tmp, opts); err != nil {
		_ = RemoveAll(tmp)
		return "", false, err
	}
	// Publish atomically; when another run won the race, use its copy.
	if err := os.Rename(tmp, final); err != nil {
		_ = RemoveAll(tmp)
		if st, serr := os.Stat(final); serr == nil && st.IsDir() {
			return final, true, nil
		}
		return "", false, fmt.Errorf("layer cache: publish %s: %w", final, err)
	}
	return final, false, nil
}

func randHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Unpack reads layer l's blob, checks its size and digest and the diff_id
// of the uncompressed tar while streaming, and applies it to dir.
func Unpack(l image.Layer, dir string, opts Options) error {
	f, err := os.Open(l.Blob)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer f.Close()
	if err := l.Digest.Validate(); err != nil {
		return fmt.Errorf("layer digest %q: %w", l.Digest, err)
	}
	blobHash := l.Digest.Algorithm().Hash()
	counted := &countingReader{r: io.TeeReader(f, blobHash)}
	br := bufio.NewReaderSize(counted, 64<<10)
	plain, closeFn, err := Decompress(br)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer closeFn()
	diffHash := l.DiffID.Algorithm().Hash()
	tarStream := io.TeeReader(plain, diffHash)
	if err := Apply(tarStream, dir, opts); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	// Read what the tar reader left (end-of-archive padding) so that both
	// digests cover the whole stream.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return fmt.Errorf("layer %s: read to end: %w", l.Digest, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("layer %s: read to end: %w", l.Digest, err)
	}
	if l.Size > 0 && counted.n != l.Size {
		return fmt.Errorf("layer %s: blob is %d bytes, manifest says %d", l.Digest, counted.n, l.Size)
	}
	if got := digestOf(l.Digest.Algorithm(), blobHash); got != l.Digest {
		return fmt.Errorf("layer %s: blob has digest %s; the image is corrupt", l.Digest, got)
	}
	if got := digestOf(l.DiffID.Algorithm(), diffHash); got != l.DiffID {
		return fmt.Errorf("layer %s: uncompressed content has digest %s, config says diff_id %s", l.Digest, got, l.DiffID)
	}
	return nil
}

func digestOf(alg digest.Algorithm, h hash.Hash) digest.Digest {
	return digest.NewDigest(alg, h)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress sniffs the stream's magic bytes and returns the uncompressed
// stream: gzip, zstd, or the input unchanged (plain tar). The media type is
// not trusted: skopeo and registries have been seen to mislabel layers.
func Decompress(br *bufio.Reader) (io.Reader, func(), error) {
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}
