//go:build !linux

package dnsserver

import (
	"errors"
	"net"
)

// openRawSock: only Linux has the blocking-thread socket; elsewhere the
// batch path reads through Go's poller (newPollSock).
func openRawSock(*net.UDPConn) (udpSock, error) { return nil, errors.ErrUnsupported }
