//go:build !linux

package sidecar

import "errors"

var errNoLoop = errors.New("no L4 event loop on this system")

// Other systems use the net-package path (listener.serveTCP).
var l4LoopEnabled = false

// l7LoopEnabled: no L7 event loop either (listener.serveHTTP).
var l7LoopEnabled = false

type l4loop struct{}

func startL4Loop(l *listener) (*l4loop, error) { return nil, errNoLoop }

func (lp *l4loop) run()           {}
func (lp *l4loop) closeFDs()      {}
func (lp *l4loop) stopAccepting() {}
func (lp *l4loop) closeAll() int  { return 0 }

func (lp *l4loop) protocolChanged() {}
