//go:build !linux

package rpcmux

import "net"

// connOpen cannot look without reading here: a connection the server
// closed fails on use, and idempotent requests are sent again.
func connOpen(net.Conn) bool { return true }
