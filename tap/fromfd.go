package tap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FromFD wraps an inherited, already attached tap fd (slirp4netns
// --netns-type=tapfd FD). It takes ownership of fd, makes it close-on-exec
// and non-blocking, and names the file after the device. The device must be
// a tap opened with IFF_NO_PI and without IFF_VNET_HDR, so that every read
// and write is one plain Ethernet frame.
func FromFD(fd int) (*os.File, error) {
	if fd < 0 {
		return nil, fmt.Errorf("tap fd %d: not a file descriptor", fd)
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EBADF):
			return nil, fmt.Errorf("tap fd %d: not open; pass the descriptor to this process", fd)
		case errors.Is(err, unix.EBADFD):
			return nil, fmt.Errorf("tap fd %d: /dev/net/tun is not attached to a device; attach it with ioctl(TUNSETIFF) first", fd)
		}
		return nil, fmt.Errorf("tap fd %d: not a tap device (ioctl(TUNGETIFF): %w)", fd, err)
	}
	name := ifr.Name()
	flags := ifr.Uint16()
	switch {
	case flags&unix.IFF_TAP == 0:
		return nil, fmt.Errorf("tap fd %d: %s is a tun (layer 3) device; an Ethernet tap is needed (IFF_TAP)", fd, name)
	case flags&unix.IFF_NO_PI == 0:
		return nil, fmt.Errorf("tap fd %d: %s was opened without IFF_NO_PI, so its frames carry a packet information header; open it with IFF_TAP|IFF_NO_PI", fd, name)
	case flags&unix.IFF_VNET_HDR != 0:
		return nil, fmt.Errorf("tap fd %d: %s was opened with IFF_VNET_HDR, so its frames carry a virtio-net header; open it with IFF_TAP|IFF_NO_PI only", fd, name)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("tap fd %d: set non-blocking: %w", fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
