package rpcmux

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// connOpen reports whether an idle connection may be written to: the
// server has not closed it (no EOF waiting) and sent nothing unasked. One
// non-blocking MSG_PEEK, no read.
func connOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		// Data or EOF: not open; only "nothing to read" is.
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		open = err == unix.EAGAIN || err == unix.EINTR
		return true
	})
	return err == nil && open
}
