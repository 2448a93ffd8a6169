package sidecar

import (
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outrigger/outrigger/internal/sockutil"
)

// copyTCP is io.Copy between TCP connections: (*net.TCPConn).ReadFrom
// moves the bytes with splice(2), kernel to kernel.
func copyTCP(dst, src *net.TCPConn) (int64, error) {
	return io.Copy(dst, src)
}

// lastDataRecv is how long ago the socket last received data
// (tcpi_last_data_recv).
func lastDataRecv(c *net.TCPConn) (time.Duration, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, false
	}
	return time.Duration(info.Last_data_recv) * time.Millisecond, true
}

// connAlive reports whether an idle keep-alive connection is still open
// (sockutil.ConnAlive).
func connAlive(c *net.TCPConn) bool { return sockutil.ConnAlive(c) }

// fdAlive is connAlive on the event loops' raw sockets.
func fdAlive(fd int) bool { return sockutil.FDAlive(fd) }
