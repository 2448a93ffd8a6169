// Package sockutil holds socket checks shared by the proxy's and the
// server port's connection pools.
package sockutil

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ConnAlive reports whether an idle keep-alive connection is still open:
// a non-blocking MSG_PEEK finds nothing to read (EAGAIN). EOF or
// unexpected data mean the peer closed it (or broke the protocol). A
// connection with no file descriptor is taken as open.
func ConnAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	if err := rc.Control(func(fd uintptr) { alive = FDAlive(int(fd)) }); err != nil {
		return false
	}
	return alive
}

// FDAlive is ConnAlive on a raw socket: one recvfrom, no scheduler work.
func FDAlive(fd int) bool {
	var b [1]byte
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return e == unix.EAGAIN
}
