package netstack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tapEndpoint is the link endpoint for a tap opened with IFF_VNET_HDR:
// every frame carries a struct virtio_net_hdr, which lets the tap and the
// stack exchange 64 KiB TCP segments instead of MTU-sized frames in both
// directions (TSO from the guest to us, GSO from us to the guest), with
// checksums left partial. gVisor's fdbased endpoint only does this for
// sockets, so taps get this small endpoint of their own.
//
// Inbound: one goroutine reads frames (header + frame in one read(2))
// into pooled buffers and delivers them to the stack; the header only
// matters for checksums, which the stack then does not verify
// (CapabilityRXChecksumOffload), so it is dropped. Outbound: one writev(2)
// per packet, with a header describing the stack's GSO metadata.
type tapEndpoint struct {
	file *os.File // the tap, non-blocking, read through Go's poller
	fd   int      // the same descriptor, for writev
	// vnetHdr says every frame carries a virtio_net_hdr (IFF_VNET_HDR);
	// without it the endpoint does no offloads.
	vnetHdr bool
	mtu     uint32
	addr    tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher // +checklocks:mu
	onClose    func()                  // +checklocks:mu
	// stopped is set, under the write lock, before the descriptor is
	// closed, so that no write can reach a reused descriptor number.
	stopped bool // +checklocks:mu

	wg       sync.WaitGroup
	closed   func(error) // called once when reading fails for good
	stopOnce sync.Once
}

// virtio_net_hdr (include/uapi/linux/virtio_net.h), little endian.
const (
	vnetHdrSize          = 10
	vnetHdrFNeedsCsum    = 1
	vnetHdrGSONone       = 0
	vnetHdrGSOTCPv4      = 1
	vnetHdrGSOTCPv6      = 4
	tapGSOMaxSize        = 1<<16 - 1
	tunFCsum, tunFTSO4   = 0x01, 0x02
	tunFTSO6, tunFTSOECN = 0x04, 0x08
)

// newTapEndpoint serves a frame descriptor: a tap opened with
// IFF_TAP|IFF_NO_PI, or a socket carrying one Ethernet frame per packet
// (BESS, tests). With vnetHdr the tap was opened with IFF_VNET_HDR too, and
// checksum and TCP segmentation offload are turned on, so that the guest's
// kernel may hand us 64 KiB segments. The descriptor stays the caller's;
// closed is called when reading from it fails or the peer of a socket
// hangs up.
//
// gVisor's fdbased endpoint is not used for any of these: its readv
// dispatcher stops reading for good at the first frame it cannot parse
// (shorter than an Ethernet header, or for another station), which a
// guest can send at will.
func newTapEndpoint(fd int, mtu uint32, addr tcpip.LinkAddress, vnetHdr bool, closed func(error)) (*tapEndpoint, error) {
	if vnetHdr {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6|tunFTSOECN); err != nil {
			return nil, fmt.Errorf("enable offloads on the tap (TUNSETOFFLOAD): %w", err)
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrSize); err != nil {
			return nil, fmt.Errorf("set the tap's virtio-net header size: %w", err)
		}
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup tap fd: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("tap fd non-blocking: %w", err)
	}
	return &tapEndpoint{
		file:    os.NewFile(uintptr(dup), "tap"),
		fd:      dup,
		vnetHdr: vnetHdr,
		mtu:     mtu,
		addr:    addr,
		closed:  closed,
	}, nil
}

// MTU implements stack.LinkEndpoint.
func (e *tapEndpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint.
func (e *tapEndpoint) SetMTU(mtu uint32) { e.mtu = mtu }

// MaxHeaderLength implements stack.LinkEndpoint.
func (e *tapEndpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *tapEndpoint) LinkAddress() tcpip.LinkAddress { return e.addr }

// SetLinkAddress implements stack.LinkEndpoint.
func (e *tapEndpoint) SetLinkAddress(addr tcpip.LinkAddress) { e.addr = addr }

// Capabilities implements stack.LinkEndpoint.
func (e *tapEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *tapEndpoint) GSOMaxSize() uint32 {
	if !e.vnetHdr {
		return 0
	}
	return tapGSOMaxSize
}

// SupportedGSO implements stack.GSOEndpoint: with the virtio-net header,
// the guest's kernel segments.
func (e *tapEndpoint) SupportedGSO() stack.SupportedGSO {
	if !e.vnetHdr {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *tapEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *tapEndpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (e *tapEndpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// IsAttached implements stack.LinkEndpoint.
func (e *tapEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Attach implements stack.LinkEndpoint: it starts the reader, or with nil
// (the NIC is going away) stops it and waits.
func (e *tapEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	if d == nil {
		// The NIC is going away, under the stack's lock: signal the
		// reader but do not wait for it here (Wait does).
		e.dispatcher = nil
		e.mu.Unlock()
		e.signalStop()
		return
	}
	start := e.dispatcher == nil
	e.dispatcher = d
	e.mu.Unlock()
	if start {
		e.wg.Add(1)
		go e.readLoop()
	}
}

// Wait implements stack.LinkEndpoint.
func (e *tapEndpoint) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint.
func (e *tapEndpoint) Close() {
	e.stop()
	e.mu.RLock()
	f := e.onClose
	e.mu.RUnlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *tapEndpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	e.onClose = f
	e.mu.Unlock()
}

// stop closes our duplicate of the descriptor, which ends the reader, and
// waits for it.
func (e *tapEndpoint) stop() {
	e.signalStop()
	e.wg.Wait()
}

// signalStop makes writes fail and the reader end, without waiting.
func (e *tapEndpoint) signalStop() {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		e.file.Close()
	})
}

// Inbound frames are read with readv(2) into three pooled views: a small
// one that holds the headers (so that the stack's header accesses, which
// copy a shared chunk, copy little), one of 64 KiB (the largest pooled
// size) for the payload, and a small overflow for the largest GSO frames.
const (
	tapHeadView     = 256
	tapBodyView     = buffer.MaxChunkSize
	tapOverflowView = 512
)

func (e *tapEndpoint) readLoop() {
	defer e.wg.Done()
	rc, err := e.file.SyscallConn()
	if err != nil {
		e.closed(err)
		return
	}
	var vh [vnetHdrSize]byte
	hdr := 0
	if e.vnetHdr {
		hdr = vnetHdrSize
	}
	sizes := [3]int{tapHeadView, tapBodyView, tapOverflowView}
	// Views a frame did not reach are kept for the next read: gVisor
	// clears every view it hands out, and clearing an unused 64 KiB body
	// for each small frame cost more than the rest of reading it.
	var views [3]*buffer.View
	defer func() {
		for _, v := range views {
			if v != nil {
				v.Release()
			}
		}
	}()
	for {
		iov := make([][]byte, 0, 4)
		if hdr > 0 {
			iov = append(iov, vh[:])
		}
		for i, sz := range sizes {
			if views[i] == nil {
				views[i] = buffer.NewViewSize(sz)
			}
			iov = append(iov, views[i].AsSlice())
		}
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = rawReadv(int(fd), iov)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err == nil {
			err = rerr
		}
		if err == nil && n == 0 {
			// Only a socket reads empty: its peer hung up.
			err = io.EOF
		}
		if err != nil || n <= hdr+header.EthernetMinimumSize {
			if err != nil && !errors.Is(err, unix.EINTR) {
				if !errors.Is(err, os.ErrClosed) && e.closed != nil {
					e.closed(err)
				}
				return
			}
			continue
		}
		n -= hdr
		var payload buffer.Buffer
		for i, v := range views {
			if n <= 0 {
				break
			}
			if n < sizes[i] {
				v.CapLength(n)
			}
			n -= sizes[i]
			payload.Append(v)
			views[i] = nil
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
		e.deliver(pkt)
		pkt.DecRef()
	}
}

func (e *tapEndpoint) deliver(pkt *stack.PacketBuffer) {
	hdr, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return
	}
	eth := header.Ethernet(hdr)
	dst := eth.DestinationAddress()
	// Frames for other stations on the link are not ours; groupcast ones
	// (the low bit of the first octet) are everyone's.
	if dst != e.addr && dst[0]&1 == 0 {
		return
	}
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d != nil {
		d.DeliverNetworkPacket(eth.Type(), pkt)
	}
}

// WritePackets implements stack.LinkEndpoint. A packet the tap refuses is
// dropped, as on a real link.
func (e *tapEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.stopped {
		return 0, &tcpip.ErrClosedForSend{}
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(pkt); err != nil {
			if n == 0 {
				return 0, err
			}
			break
		}
		n++
	}
	return n, nil
}

func (e *tapEndpoint) writePacket(pkt *stack.PacketBuffer) tcpip.Error {
	var vh [vnetHdrSize]byte
	if gso := pkt.GSOOptions; gso.Type != stack.GSONone {
		hdrLen := uint16(pkt.HeaderSize())
		var flags, typ uint8
		var start, off uint16
		if gso.NeedsCsum {
			flags = vnetHdrFNeedsCsum
			start = header.EthernetMinimumSize + gso.L3HdrLen
			off = gso.CsumOffset
		}
		var size uint16
		if uint16(pkt.Data().Size()) > gso.MSS {
			switch gso.Type {
			case stack.GSOTCPv4:
				typ = vnetHdrGSOTCPv4
			case stack.GSOTCPv6:
				typ = vnetHdrGSOTCPv6
			}
			size = gso.MSS
		}
		vh = [vnetHdrSize]byte{flags, typ,
			byte(hdrLen), byte(hdrLen >> 8),
			byte(size), byte(size >> 8),
			byte(start), byte(start >> 8),
			byte(off), byte(off >> 8)}
	}
	views := pkt.AsSlices()
	var arr [8][]byte
	bufs := arr[:0]
	if e.vnetHdr {
		bufs = append(bufs, vh[:])
	}
	bufs = append(bufs, views...)
	for {
		_, err := rawWritev(e.fd, bufs)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			// The tap's queue towards the guest is full: wait for room
			// rather than drop, TCP would only resend it.
			fds := []unix.PollFd{{Fd: int32(e.fd), Events: unix.POLLOUT}}
			if _, perr := unix.Poll(fds, 100); perr != nil && !errors.Is(perr, unix.EINTR) {
				return &tcpip.ErrClosedForSend{}
			}
			continue
		case errors.Is(err, unix.EBADF):
			return &tcpip.ErrClosedForSend{}
		default:
			var errno unix.Errno
			if errors.As(err, &errno) {
				return tcpip.TranslateErrno(errno)
			}
			return &tcpip.ErrClosedForSend{}
		}
	}
}

var _ stack.GSOEndpoint = (*tapEndpoint)(nil)
