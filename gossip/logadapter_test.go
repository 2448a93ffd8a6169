package gossip

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseMemberlistLine(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "memberlist: Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking n as failed", slog.LevelInfo, "memberlist: Marking n as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: x)", slog.LevelWarn, "memberlist: Refuting a suspect message (from: x)"},
		{"[ERR] memberlist: Push/Pull with n failed: EOF", slog.LevelError, "memberlist: Push/Pull with n failed: EOF"},
		{"[ERROR] memberlist: Failed to compress payload: x", slog.LevelError, "memberlist: Failed to compress payload: x"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "memberlist: Failed to shutdown transport: x"},
		{"Err: Could not set the deadline: x", slog.LevelError, "memberlist: Could not set the deadline: x"},
		{"no prefix at all", slog.LevelInfo, "memberlist: no prefix at all"},
	}
	for _, tt := range tests {
		level, msg := parseMemberlistLine(tt.line)
		if level != tt.level || msg != tt.msg {
			t.Errorf("parse(%q) = %v %q, want %v %q", tt.line, level, msg, tt.level, tt.msg)
		}
	}
}

func TestKeyRejection(t *testing.T) {
	tests := []struct {
		msg, from, reason string
		ok                bool
	}{
		{"memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:5000",
			"127.0.0.1:5000", "no installed key could decrypt it", true},
		{"memberlist: Decrypt packet failed: no installed keys could decrypt the message from=[::1]:5000",
			"[::1]:5000", "no installed key could decrypt it", true},
		{"memberlist: Decrypt packet failed: unsupported encryption version 4 from=10.0.0.1:8301",
			"10.0.0.1:8301", "it is not encrypted (or not with a known scheme) and this member requires encryption", true},
		{"memberlist: Decrypt packet failed: something new from=10.0.0.1:8301",
			"10.0.0.1:8301", "it could not be decrypted: something new", true},
		{"memberlist: failed to receive: read tcp: i/o timeout from=10.0.0.1:1", "", "", false},
		{"memberlist: failed to receive: no installed keys could decrypt the message", "", "", false},
		{"memberlist: Marking n as failed", "", "", false},
	}
	for _, tt := range tests {
		from, reason, ok := keyRejection(tt.msg)
		if from != tt.from || reason != tt.reason || ok != tt.ok {
			t.Errorf("keyRejection(%q) = %q %q %v, want %q %q %v", tt.msg, from, reason, ok, tt.from, tt.reason, tt.ok)
		}
	}
}

func TestLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	rejected := 0
	a := newLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), func() { rejected++ })
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	l := log.New(a, "", 0)

	l.Printf("[DEBUG] memberlist: filtered out")
	l.Printf("[WARN] memberlist: kept")
	const bad = "[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:9"
	l.Print(bad)
	l.Print(bad) // same sender within a minute: debug only
	now = now.Add(61 * time.Second)
	l.Print(bad)

	out := buf.String()
	if strings.Contains(out, "filtered out") {
		t.Error("debug line passed an info-level handler")
	}
	if !strings.Contains(out, `level=WARN msg="memberlist: kept"`) {
		t.Errorf("warn line missing:\n%s", out)
	}
	want := `level=ERROR msg="gossip: rejected message from 127.0.0.1:9: no installed key could decrypt it (gossip encryption key mismatch?)" from=127.0.0.1:9`
	if got := strings.Count(out, want); got != 2 {
		t.Errorf("rejection line logged %d times, want 2 (first, then after a minute):\n%s", got, out)
	}
	if strings.Contains(out, "level=ERROR msg=\"memberlist: failed to receive") {
		t.Error("memberlist's own line logged besides the clear one")
	}
	if rejected != 3 {
		t.Errorf("rejected counted %d, want 3", rejected)
	}
}
