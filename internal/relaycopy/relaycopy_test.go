package relaycopy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// scriptedReader returns the sizes in reads one Read at a time (a size
// larger than the buffer fills it), then io.EOF; it records the buffer
// size of every Read and whether ready came before it, and fails the test
// if ready was skipped after a short read.
type scriptedReader struct {
	t        *testing.T
	reads    []int
	bufs     []int
	waited   []bool
	readied  bool
	lastFull bool
	next     byte
}

func (r *scriptedReader) ready() error {
	r.readied = true
	return nil
}

func (r *scriptedReader) Read(b []byte) (int, error) {
	if !r.readied && !r.lastFull {
		r.t.Fatal("Read without ready after a short read")
	}
	r.waited = append(r.waited, r.readied)
	r.readied = false
	r.bufs = append(r.bufs, len(b))
	r.lastFull = len(r.reads) > 0 && r.reads[0] >= len(b)
	if len(r.reads) == 0 {
		return 0, io.EOF
	}
	n := min(r.reads[0], len(b))
	r.reads = r.reads[1:]
	for i := range n {
		b[i] = r.next
		r.next++
	}
	return n, nil
}

func TestCopyBufferSizes(t *testing.T) {
	// Four full small reads make the transfer bulk; a short read ends it.
	big := 1 << 30
	r := &scriptedReader{t: t, reads: []int{big, big, big, big, big, big, 10, 5}}
	var dst bytes.Buffer
	var counted int
	err := Copy(&dst, r, r.ready, func(n int) { counted += n })
	if err != io.EOF {
		t.Fatalf("Copy = %v, want io.EOF", err)
	}
	want := []int{smallBuf, smallBuf, smallBuf, smallBuf, largeBuf, largeBuf, largeBuf, smallBuf, smallBuf}
	if !equal(r.bufs, want) {
		t.Errorf("buffer sizes %v, want %v", r.bufs, want)
	}
	// Waits only before the first read and after short ones.
	wantWaited := []bool{true, false, false, false, false, false, false, true, true}
	if fmt.Sprint(r.waited) != fmt.Sprint(wantWaited) {
		t.Errorf("waited before reads %v, want %v", r.waited, wantWaited)
	}
	total := 4*smallBuf + 2*largeBuf + 10 + 5
	if dst.Len() != total || counted != total {
		t.Errorf("wrote %d, counted %d; want %d", dst.Len(), counted, total)
	}
	for i, c := range dst.Bytes() {
		if c != byte(i) {
			t.Fatalf("byte %d = %d, want %d", i, c, byte(i))
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestCopyErrors(t *testing.T) {
	boom := errors.New("boom")
	r := &scriptedReader{t: t, reads: []int{3}}
	if err := Copy(failWriter{boom}, r, r.ready, nil); err != boom {
		t.Errorf("Copy to a failing writer = %v, want %v", err, boom)
	}

	reads := 0
	src := readerFunc(func(b []byte) (int, error) { reads++; return 1, nil })
	if err := Copy(io.Discard, src, func() error { return boom }, nil); err != boom || reads != 0 {
		t.Errorf("Copy with a failing ready = %v after %d reads, want %v after none", err, reads, boom)
	}

	// ErrNoWait: read anyway (here until the source ends).
	var dst bytes.Buffer
	if err := Copy(&dst, bytes.NewReader([]byte("abc")), func() error { return ErrNoWait }, nil); err != io.EOF || dst.String() != "abc" {
		t.Errorf("Copy with ErrNoWait = %v, %q; want io.EOF, \"abc\"", err, dst.String())
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func TestBurstDrain(t *testing.T) {
	// A burst: three full small reads, a short one, then nothing for now.
	var b Burst
	var dst bytes.Buffer
	var bufs []int
	script := []int{smallBuf, smallBuf, smallBuf, 7}
	next := byte(0)
	read := func(p []byte) (int, error) {
		bufs = append(bufs, len(p))
		if len(script) == 0 {
			return 0, ErrEmpty
		}
		n := script[0]
		script = script[1:]
		for i := range n {
			p[i] = next
			next++
		}
		return n, nil
	}
	counted := 0
	if err := b.Drain(&dst, read, func(n int) { counted += n }); err != nil {
		t.Fatalf("Drain = %v, want nil once the source is empty", err)
	}
	want := []int{smallBuf, smallBuf, smallBuf, smallBuf, smallBuf}
	if !equal(bufs, want) {
		t.Errorf("buffer sizes %v, want %v", bufs, want)
	}
	if total := 3*smallBuf + 7; dst.Len() != total || counted != total {
		t.Errorf("wrote %d, counted %d; want %d", dst.Len(), counted, total)
	}
	for i, c := range dst.Bytes() {
		if c != byte(i) {
			t.Fatalf("byte %d = %d, want %d", i, c, byte(i))
		}
	}

	// Bulk: four full reads make the next one large, also in the next
	// Drain (the source emptied exactly); a short read ends the bulk.
	bufs = nil
	script = []int{smallBuf, smallBuf, smallBuf, smallBuf}
	if err := b.Drain(io.Discard, read, nil); err != nil {
		t.Fatal(err)
	}
	script = []int{largeBuf, 5}
	if err := b.Drain(io.Discard, read, nil); err != nil {
		t.Fatal(err)
	}
	want = []int{smallBuf, smallBuf, smallBuf, smallBuf, largeBuf, largeBuf, largeBuf, smallBuf}
	if !equal(bufs, want) {
		t.Errorf("buffer sizes %v, want %v", bufs, want)
	}

	// The end of the stream and errors come back as they are.
	boom := errors.New("boom")
	if err := b.Drain(io.Discard, func([]byte) (int, error) { return 0, io.EOF }, nil); err != io.EOF {
		t.Errorf("Drain at the end = %v, want io.EOF", err)
	}
	if err := b.Drain(io.Discard, func([]byte) (int, error) { return 0, boom }, nil); err != boom {
		t.Errorf("Drain of a failing source = %v, want %v", err, boom)
	}
	script = []int{3}
	if err := b.Drain(failWriter{boom}, read, nil); err != boom {
		t.Errorf("Drain to a failing writer = %v, want %v", err, boom)
	}
}
