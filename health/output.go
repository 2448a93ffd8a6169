package health

import (
	"fmt"
	"unicode/utf8"
)

// capHead keeps the start of s so that the result, marker included, is at
// most limit bytes. total is the length of the whole output when known
// (it may exceed len(s) when only part was read), or -1.
func capHead(s string, limit int, total int) string {
	if len(s) <= limit && total <= len(s) {
		return s
	}
	marker := " ... (truncated)"
	if total >= 0 {
		marker = fmt.Sprintf(" ... (truncated, %d bytes in all)", max(total, len(s)))
	}
	keep := max(limit-len(marker), 0)
	if keep > len(s) {
		keep = len(s)
	}
	for keep > 0 && keep < len(s) && !utf8.RuneStart(s[keep]) {
		keep--
	}
	out := s[:keep] + marker
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// capTail keeps the end of s (the last lines of a script, where errors
// are), with Consul's "Captured N of M bytes" header, in at most limit
// bytes. total is how many bytes the script wrote in all; s holds the
// last of them.
func capTail(s string, limit int, total int64) string {
	if int64(len(s)) >= total && len(s) <= limit {
		return s
	}
	header := fmt.Sprintf("Captured %d of %d bytes\n...\n", limit, total)
	keep := max(limit-len(header), 0)
	keep = min(keep, len(s))
	tail := s[len(s)-keep:]
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	out := fmt.Sprintf("Captured %d of %d bytes\n...\n", len(tail), total) + tail
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// tailBuffer is an io.Writer keeping the last size bytes written and
// counting all of them. exec.Cmd gives it one writer goroutine at a time
// when it is both Stdout and Stderr.
type tailBuffer struct {
	size  int
	buf   []byte
	total int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.total += int64(len(p))
	if len(p) >= b.size {
		b.buf = append(b.buf[:0], p[len(p)-b.size:]...)
		return len(p), nil
	}
	if over := len(b.buf) + len(p) - b.size; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}
