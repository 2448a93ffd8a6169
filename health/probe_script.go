package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// scriptWaitDelay bounds the wait for a script's output pipes once it has
// exited or been killed: a daemon it started in the background may hold
// them open forever.
const scriptWaitDelay = time.Second

type scriptProbe struct {
	args    []string
	timeout time.Duration
	limit   int
}

// probe runs the command directly (no shell), with stdin from /dev/null
// and stdout and stderr captured together, keeping the last limit bytes
// (the end of a script's output is where its error is). Exit 0 is
// passing, 1 warning, anything else critical. When ctx ends first, the
// script's whole process group is killed.
func (p *scriptProbe) probe(ctx context.Context) result {
	out := &tailBuffer{size: p.limit}
	cmd := exec.CommandContext(ctx, p.args[0], p.args[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = scriptWaitDelay
	killProcessGroupOnCancel(cmd)
	err := cmd.Run()

	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg := fmt.Sprintf("Timed out (%s) running check", p.timeout)
		if out.total > 0 {
			msg += "\n\n"
			msg += capTail(string(out.buf), max(p.limit-len(msg), 0), out.total)
		}
		return result{StatusCritical, msg}
	}
	output := capTail(string(out.buf), p.limit, out.total)
	if cmd.ProcessState == nil { // never started: not found, not executable
		return result{StatusCritical, err.Error()}
	}
	switch cmd.ProcessState.ExitCode() {
	case 0:
		return result{StatusPassing, output}
	case 1:
		return result{StatusWarning, output}
	default:
		return result{StatusCritical, output}
	}
}
