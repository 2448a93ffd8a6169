//go:build !unix

package health

import "os/exec"

// killProcessGroupOnCancel keeps exec's default of killing the process
// alone: process groups are a Unix notion.
func killProcessGroupOnCancel(*exec.Cmd) {}
