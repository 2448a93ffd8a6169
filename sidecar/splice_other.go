//go:build !linux

package sidecar

import (
	"io"
	"net"
	"time"
)

func copyTCP(dst, src *net.TCPConn) (int64, error) { return io.Copy(dst, src) }

func lastDataRecv(c *net.TCPConn) (time.Duration, bool) { return 0, false }

func connAlive(c *net.TCPConn) bool { return true }
