package health

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCapHead(t *testing.T) {
	if got := capHead("short", 100, -1); got != "short" {
		t.Errorf("got %q, want unchanged", got)
	}
	long := strings.Repeat("a", 5000)
	got := capHead(long, 4096, -1)
	if len(got) != 4096 || !strings.HasSuffix(got, "a ... (truncated)") {
		t.Errorf("got len %d, suffix %q", len(got), got[len(got)-20:])
	}
	got = capHead(long, 4096, len(long))
	if len(got) > 4096 || !strings.HasSuffix(got, " ... (truncated, 5000 bytes in all)") {
		t.Errorf("got len %d, suffix %q", len(got), got[len(got)-40:])
	}
	// Never cuts a rune in two.
	got = capHead(strings.Repeat("é", 100), 64, -1)
	if !utf8.ValidString(got) || len(got) > 64 {
		t.Errorf("got %q (len %d)", got, len(got))
	}
}

func TestCapTail(t *testing.T) {
	if got := capTail("all of it", 100, 9); got != "all of it" {
		t.Errorf("got %q", got)
	}
	var b tailBuffer
	b.size = 4096
	for range 100 {
		b.Write([]byte(strings.Repeat("x", 99) + "\n"))
	}
	b.Write([]byte("the end"))
	got := capTail(string(b.buf), 4096, b.total)
	if len(got) != 4096 {
		t.Errorf("got len %d, want 4096", len(got))
	}
	if !strings.HasPrefix(got, "Captured 4063 of 10007 bytes\n...\n") || !strings.HasSuffix(got, "x\nthe end") {
		t.Errorf("got %q...%q", got[:40], got[len(got)-20:])
	}
}

func TestTailBuffer(t *testing.T) {
	b := tailBuffer{size: 5}
	for _, s := range []string{"ab", "cd", "efg", "", "123456789", "z"} {
		b.Write([]byte(s))
	}
	if string(b.buf) != "6789z" || b.total != 17 {
		t.Errorf("got %q total %d, want \"6789z\" total 17", b.buf, b.total)
	}
}
