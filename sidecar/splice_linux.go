package sidecar

import (
	"io"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// connAlive reports whether an idle keep-alive connection is still open:
// a non-blocking MSG_PEEK finds nothing to read (EAGAIN). EOF or unexpected
// data mean the upstream closed it (or broke the protocol).
func connAlive(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	rc.Control(func(fd uintptr) { alive = fdAlive(int(fd)) })
	return alive
}

// fdAlive checks that an idle connection is open (nothing to read, no EOF).
func fdAlive(fd int) bool {
	var b [1]byte
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return e == unix.EAGAIN
}
