package gossip

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logAdapter is the io.Writer behind memberlist's *log.Logger. It turns
// each "[LEVEL] memberlist: text" line into a slog record at that level,
// and rewrites the lines that mean a peer's messages could not be
// decrypted (or were not encrypted when they had to be) into one clear
// line naming the likely cause.
type logAdapter struct {
	log        *slog.Logger
	onRejected func() // counts rejected messages; may be nil
	now        func() time.Time

	mu       sync.Mutex
	lastWarn map[string]time.Time // sender -> last rejection logged at Error
}

// rejectLogEvery limits the clear rejection line to one per sender and
// period; repeats go to Debug. A peer with the wrong key retries joining
// and gossips every few hundred milliseconds.
const rejectLogEvery = time.Minute

func newLogAdapter(l *slog.Logger, onRejected func()) *logAdapter {
	return &logAdapter{log: l, onRejected: onRejected, now: time.Now, lastWarn: map[string]time.Time{}}
}

// Write handles one log line; log.Logger calls it once per line.
func (a *logAdapter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := parseMemberlistLine(line)
	if from, reason, ok := keyRejection(msg); ok {
		a.rejected(from, reason, msg)
		return len(p), nil
	}
	ctx := context.Background()
	if a.log.Enabled(ctx, level) {
		a.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

func (a *logAdapter) rejected(from, reason, orig string) {
	if a.onRejected != nil {
		a.onRejected()
	}
	now := a.now()
	a.mu.Lock()
	last, seen := a.lastWarn[from]
	loud := !seen || now.Sub(last) >= rejectLogEvery
	if loud {
		if len(a.lastWarn) >= 1024 { // many senders (ephemeral TCP ports): start over
			clear(a.lastWarn)
		}
		a.lastWarn[from] = now
	}
	a.mu.Unlock()
	level := slog.LevelDebug
	if loud {
		level = slog.LevelError
	}
	a.log.Log(context.Background(), level,
		"gossip: rejected message from "+from+": "+reason+" (gossip encryption key mismatch?)",
		"from", from, "memberlist", orig)
}

// parseMemberlistLine splits memberlist's level prefix off a line and
// makes sure the text says where it came from.
func parseMemberlistLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	msg := line
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			switch line[1:i] {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = strings.TrimSpace(line[i+1:])
		}
	} else if rest, ok := strings.CutPrefix(line, "Err: "); ok {
		level, msg = slog.LevelError, rest
	}
	if !strings.HasPrefix(msg, "memberlist: ") {
		msg = "memberlist: " + msg
	}
	return level, msg
}

// keyRejection recognises memberlist's lines about a message this member
// could not accept because of encryption (see memberlist's net.go:
// handleConn "failed to receive: ...", ingestPacket "Decrypt packet
// failed: ..."), returning the sender and a plain reason.
func keyRejection(msg string) (from, reason string, ok bool) {
	rest, isStream := strings.CutPrefix(msg, "memberlist: failed to receive: ")
	if !isStream {
		if rest, ok = strings.CutPrefix(msg, "memberlist: Decrypt packet failed: "); !ok {
			return "", "", false
		}
	}
	i := strings.LastIndex(rest, " from=")
	if i < 0 {
		return "", "", false
	}
	cause, from := rest[:i], rest[i+len(" from="):]
	reason, known := keyErrorReason(cause)
	if !known {
		if isStream {
			return "", "", false // EOF, timeouts...: not about keys
		}
		reason = "it could not be decrypted: " + cause
	}
	return from, reason, true
}

// keyErrorReason maps memberlist's encryption error texts to a reason
// phrased from the receiver's side.
func keyErrorReason(cause string) (string, bool) {
	switch {
	case strings.Contains(cause, "no installed keys could decrypt"):
		return "no installed key could decrypt it", true
	case strings.Contains(cause, "encryption is configured but remote state is not encrypted"):
		return "it is not encrypted and this member requires encryption", true
	case strings.Contains(cause, "remote state is encrypted and encryption is not configured"):
		return "it is encrypted and this member has no gossip key", true
	case strings.Contains(cause, "unsupported encryption version"),
		strings.Contains(cause, "payload is too small to decrypt"),
		strings.Contains(cause, "cannot decrypt empty payload"):
		return "it is not encrypted (or not with a known scheme) and this member requires encryption", true
	}
	return "", false
}

var _ io.Writer = (*logAdapter)(nil)
