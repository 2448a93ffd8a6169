//go:build !linux

package dnsserver

import (
	"net"

	"golang.org/x/net/ipv4"
)

// newBatchReader: only Linux has the allocation-free reader; elsewhere
// x/net's ReadBatch is used.
func newBatchReader(*net.UDPConn, []ipv4.Message) batchReader { return nil }
