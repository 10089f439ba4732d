package reliability

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The guest side: actions this test binary runs inside the guest namespace
// when started with guestEnv set (see startGuest). Each prints JSON lines
// on stdout: {"ready":true} once an action that holds its connections has
// them all, then one final guestReport. Holding actions wait for stdin to
// close before they finish.

// guestReport is the outcome of a guest action.
type guestReport struct {
	Ready bool `json:"ready,omitempty"`
	// OK and Failed count the connections (or queries, or datagrams) that
	// did and did not do what the action expects.
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// Kinds counts the failures by kind (an errno name, EOF, TIMEOUT,
	// MISMATCH); Errors has the first few in full.
	Kinds  map[string]int `json:"kinds,omitempty"`
	Errors []string       `json:"errors,omitempty"`
	// Errno is the kind of a single connection's failure.
	Errno string `json:"errno,omitempty"`
	// Reply is what a single exchange got back; Replies what each of
	// several did.
	Reply   string            `json:"reply,omitempty"`
	Replies map[string]string `json:"replies,omitempty"`
	// Seconds is how long the action's main part took.
	Seconds float64 `json:"seconds,omitempty"`
}

// tally collects outcomes from many goroutines.
type tally struct {
	mu sync.Mutex
	r  guestReport
}

func (t *tally) ok() {
	t.mu.Lock()
	t.r.OK++
	t.mu.Unlock()
}

func (t *tally) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r.Failed++
	if t.r.Kinds == nil {
		t.r.Kinds = map[string]int{}
	}
	t.r.Kinds[errKind(err)]++
	if len(t.r.Errors) < 5 {
		t.r.Errors = append(t.r.Errors, err.Error())
	}
}

func (t *tally) report() guestReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.r
}

// errMismatch is a transfer whose bytes came back different.
var errMismatch = errors.New("MISMATCH")

// errKind names an error by what the tests tell apart.
func errKind(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errMismatch):
		return "MISMATCH"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "TIMEOUT"
	case errors.As(err, &errno):
		for name, v := range map[string]syscall.Errno{
			"ECONNREFUSED": syscall.ECONNREFUSED, "ENETUNREACH": syscall.ENETUNREACH,
			"EHOSTUNREACH": syscall.EHOSTUNREACH, "ETIMEDOUT": syscall.ETIMEDOUT,
			"ECONNRESET": syscall.ECONNRESET, "EPIPE": syscall.EPIPE,
			"EADDRNOTAVAIL": syscall.EADDRNOTAVAIL, "EMFILE": syscall.EMFILE,
		} {
			if errno == v {
				return name
			}
		}
		return "errno " + strconv.Itoa(int(errno))
	}
	return "OTHER"
}

func guestMain(args []string) int {
	out := json.NewEncoder(os.Stdout)
	ready := func(r guestReport) {
		r.Ready = true
		out.Encode(r)
	}
	r, err := runGuestAction(args, ready)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest:", err)
		return 2
	}
	out.Encode(r)
	return 0
}

// waitStdin blocks until the test closes the action's stdin (or kills it).
func waitStdin() { io.Copy(io.Discard, os.Stdin) }

func runGuestAction(args []string, ready func(guestReport)) (guestReport, error) {
	if len(args) < 2 {
		return guestReport{}, errors.New("usage: ACTION ADDR ...")
	}
	num := func(i int) int {
		if i >= len(args) {
			return 0
		}
		n, _ := strconv.Atoi(args[i])
		return n
	}
	switch args[0] {
	case "echo":
		// echo ADDR CONNS SIZE [hold]: open CONNS connections, all of them
		// before any sends (with hold: then say ready and wait for stdin
		// to close), then through each send SIZE pseudo-random bytes while
		// reading the echo, and compare.
		hold := len(args) > 4 && args[4] == "hold"
		return echoMany(args[1], num(2), num(3), hold, ready), nil
	case "stream":
		// stream ADDR CONNS: keep CONNS connections echoing until stdin
		// closes or all have failed; report how each ended.
		return streamMany(args[1], num(2), ready), nil
	case "short":
		// short ADDR[,ADDR...] COUNT: COUNT connections one after another,
		// round robin over the addresses: one byte each way, then close.
		return shortConns(strings.Split(args[1], ","), num(2)), nil
	case "udp-flood":
		// udp-flood ADDR FLOWS SECONDS SIZE: datagrams of SIZE bytes from
		// one source port as fast as they go for SECONDS (Reply is how
		// many were sent), and meanwhile one datagram from each of FLOWS
		// others (OK counts those the host echoed).
		return udpFlood(args[1], num(2), num(3), num(4)), nil
	case "stall":
		// stall ADDR CONNS: open CONNS connections and never read them.
		return stall(args[1], num(2), ready), nil
	case "hold":
		// hold ADDR: one connection, one echoed round trip, then hold it
		// until stdin closes and report whether it still works.
		return hold(args[1], ready), nil
	case "connect-many":
		// connect-many ADDR N: N connects at once; OK counts those that
		// connected, Kinds how the others failed.
		return connectMany(args[1], num(2)), nil
	case "connect":
		// connect ADDR: one connect, its error kind.
		c, err := net.DialTimeout("tcp", args[1], 10*time.Second)
		if err != nil {
			return guestReport{Errno: errKind(err), Failed: 1}, nil
		}
		c.Close()
		return guestReport{OK: 1}, nil
	case "udp":
		// udp ADDR MSG: send MSG, report the reply or the error.
		return udpExchange(args[1], args[2]), nil
	case "dns":
		// dns SERVER NAME: an A query, the answer's first record.
		return dnsQuery(args[1], args[2]), nil
	case "serve":
		// serve ADDR: (in the daemon's namespace) an echo server, until
		// killed; the ready line's Reply is the address it listens on.
		return serveEcho(args[1], ready)
	case "raw":
		// raw IFACE GWMAC PORT PROTO,SRC,DST...: crafted frames, and what
		// came back (rawframe_test.go).
		return rawProbe(args[1:])
	}
	return guestReport{}, fmt.Errorf("unknown action %q", args[0])
}

// payload returns size pseudo-random bytes, different for every seed.
func payload(seed uint64, size int) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, 0x5117))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// dialAll opens n connections to addr, at most 128 dials at a time. Failed
// dials leave nil and are counted in t.
func dialAll(addr string, n int, t *tally) []net.Conn {
	conns := make([]net.Conn, n)
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// The guest's own SYN retries cover SYNs the daemon drops
			// beyond its limit of connections being set up.
			c, err := net.DialTimeout("tcp", addr, 60*time.Second)
			if err != nil {
				t.fail(fmt.Errorf("dial: %w", err))
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	return conns
}

// echoOnce sends data through c to an echo server and checks what comes
// back, byte for byte (by SHA-256 and length).
func echoOnce(c net.Conn, data []byte) error {
	c.SetDeadline(time.Now().Add(120 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, rerr := io.Copy(h, c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read: %w", rerr)
	}
	if n < int64(len(data)) {
		return fmt.Errorf("read: %w after %d of %d bytes", io.ErrUnexpectedEOF, n, len(data))
	}
	if want := sha256.Sum256(data); n != int64(len(data)) || string(h.Sum(nil)) != string(want[:]) {
		return fmt.Errorf("%w: sent %d bytes, %d came back, checksums differ", errMismatch, len(data), n)
	}
	return nil
}

func connectMany(addr string, n int) guestReport {
	var t tally
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 90*time.Second)
			if err != nil {
				t.fail(err)
				return
			}
			c.Close()
			t.ok()
		})
	}
	wg.Wait()
	return t.report()
}

func echoMany(addr string, n, size int, hold bool, ready func(guestReport)) guestReport {
	var t tally
	start := time.Now()
	conns := dialAll(addr, n, &t)
	if hold {
		// Seconds: the connects in the ready line, the transfers in the
		// result.
		ready(guestReport{Seconds: time.Since(start).Seconds()})
		waitStdin()
		start = time.Now()
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			defer c.Close()
			if err := echoOnce(c, payload(uint64(i), size)); err != nil {
				t.fail(err)
				return
			}
			t.ok()
		})
	}
	wg.Wait()
	r := t.report()
	r.Seconds = time.Since(start).Seconds()
	return r
}

func streamMany(addr string, n int, ready func(guestReport)) guestReport {
	var t tally
	conns := dialAll(addr, n, &t)
	stop := make(chan struct{})
	var wg, started sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			continue
		}
		started.Add(1)
		wg.Go(func() {
			defer c.Close()
			err := streamEcho(c, uint64(i), started.Done, stop)
			if err != nil {
				t.fail(err)
				return
			}
			t.ok()
		})
	}
	started.Wait()
	ready(guestReport{})
	// Stop at stdin EOF, when every stream has failed, or after a minute
	// whatever happens.
	eof := make(chan struct{})
	go func() { waitStdin(); close(eof) }()
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-eof:
	case <-ended:
	case <-time.After(60 * time.Second):
	}
	close(stop)
	wg.Wait()
	return t.report()
}

// streamEcho writes 64 KiB chunks and checks each echo until stop (nil
// error) or a failure. started is called after the first round trip.
func streamEcho(c net.Conn, seed uint64, started func(), stop <-chan struct{}) error {
	chunk := payload(seed, 64<<10)
	got := make([]byte, len(chunk))
	first := true
	defer func() {
		if first {
			started()
		}
	}()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if string(got) != string(chunk) {
			return fmt.Errorf("%w: a 64 KiB chunk came back changed", errMismatch)
		}
		if first {
			first = false
			started()
		}
	}
}

func shortConns(addrs []string, n int) guestReport {
	var t tally
	start := time.Now()
	// A bound on the whole run, whatever the count.
	deadline := start.Add(8 * time.Minute)
	buf := make([]byte, 1)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		err := func() error {
			c, err := net.DialTimeout("tcp", addrs[i%len(addrs)], 10*time.Second)
			if err != nil {
				return fmt.Errorf("dial: %w", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte{byte(i)}); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if buf[0] != byte(i)+1 {
				return fmt.Errorf("%w: sent %d, got %d back, want %d", errMismatch, byte(i), buf[0], byte(i)+1)
			}
			return nil
		}()
		if err != nil {
			t.fail(err)
			if t.report().Failed >= 100 {
				break
			}
			continue
		}
		t.ok()
	}
	r := t.report()
	r.Seconds = time.Since(start).Seconds()
	return r
}

func udpFlood(addr string, flows, seconds, size int) guestReport {
	var t tally
	start := time.Now()
	// Volume: one flow, as fast as the guest's kernel lets it send, for
	// the given time, alongside the many flows below.
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.fail(err)
		return t.report()
	}
	defer c.Close()
	var sent int
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		data := payload(1, size)
		for end := time.Now().Add(time.Duration(seconds) * time.Second); time.Now().Before(end); {
			// A send fails only when the guest's own queue is full or an
			// ICMP error came back; neither stops a flood.
			if _, err := c.Write(data); err == nil {
				sent++
			}
		}
	}()
	// Many flows: each source port (a distinct one, 20000 and up) is a new
	// entry in the daemon's table. A flow counts as OK once the host's echo
	// comes back; the guest's tap queue overflows long before the daemon's
	// table does, so each flow gets a few tries. Sockets go in batches, to
	// stay well under the guest's own descriptor limit.
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.fail(err)
		return t.report()
	}
	for done := 0; done < flows; {
		batch := min(256, flows-done)
		var socks []*net.UDPConn
		for i := range batch {
			c, err := net.DialUDP("udp", &net.UDPAddr{Port: 20000 + done + i}, raddr)
			if err != nil {
				t.fail(err)
				continue
			}
			socks = append(socks, c)
		}
		done += batch
		answered := make([]bool, len(socks))
		for range 5 {
			var wg sync.WaitGroup
			for i, c := range socks {
				if answered[i] {
					continue
				}
				c.Write([]byte("flow"))
				c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				wg.Go(func() {
					buf := make([]byte, 16)
					if _, err := c.Read(buf); err == nil {
						answered[i] = true
					}
				})
			}
			wg.Wait()
		}
		for i, c := range socks {
			if answered[i] {
				t.ok()
			} else {
				t.fail(os.ErrDeadlineExceeded)
			}
			c.Close()
		}
	}
	<-flooded
	r := t.report()
	r.Reply = strconv.Itoa(sent)
	r.Seconds = time.Since(start).Seconds()
	return r
}

func stall(addr string, n int, ready func(guestReport)) guestReport {
	var t tally
	conns := dialAll(addr, n, &t)
	for _, c := range conns {
		if c != nil {
			t.ok()
		}
	}
	ready(guestReport{})
	waitStdin()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return t.report()
}

func hold(addr string, ready func(guestReport)) guestReport {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return guestReport{Failed: 1, Errno: errKind(err), Errors: []string{err.Error()}}
	}
	defer c.Close()
	roundTrip := func(msg string) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("%w: sent %q, got %q", errMismatch, msg, got)
		}
		return nil
	}
	if err := roundTrip("hello"); err != nil {
		return guestReport{Failed: 1, Errno: errKind(err), Errors: []string{err.Error()}}
	}
	ready(guestReport{})
	waitStdin()
	if err := roundTrip("still there"); err != nil {
		return guestReport{Failed: 1, Errno: errKind(err), Errors: []string{err.Error()}}
	}
	return guestReport{OK: 1}
}

func serveEcho(addr string, ready func(guestReport)) (guestReport, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return guestReport{}, err
	}
	ready(guestReport{Reply: l.Addr().String()})
	for {
		c, err := l.Accept()
		if err != nil {
			return guestReport{}, err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func udpExchange(addr, msg string) guestReport {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return guestReport{Failed: 1, Errno: errKind(err)}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return guestReport{Failed: 1, Errno: errKind(err)}
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return guestReport{Failed: 1, Errno: errKind(err)}
	}
	return guestReport{OK: 1, Reply: string(buf[:n])}
}

func dnsQuery(server, name string) guestReport {
	c := &dns.Client{Timeout: 10 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return guestReport{Failed: 1, Errno: errKind(err), Errors: []string{err.Error()}}
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return guestReport{Failed: 1, Reply: dns.RcodeToString[r.Rcode]}
	}
	return guestReport{OK: 1, Reply: r.Answer[0].String()}
}
