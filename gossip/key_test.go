package gossip

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	k1, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GenerateKey()
	if k1 == k2 {
		t.Error("two generated keys are equal")
	}
	key, err := DecodeKey(k1)
	if err != nil || len(key) != 32 {
		t.Fatalf("DecodeKey(GenerateKey()) = %d bytes, %v; want 32", len(key), err)
	}
}

func TestDecodeKey(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		in      string
		wantLen int
		wantErr string
	}{
		{b64(16), 16, ""},
		{b64(24), 24, ""},
		{b64(32), 32, ""},
		{"  " + b64(32) + "\n", 32, ""},
		{"", 0, "gossip: key: empty: bad gossip key"},
		{"not base64!", 0, "gossip: key: not base64 (illegal base64 data at input byte 3): bad gossip key"},
		{b64(7), 0, "gossip: key: length 7, want 16, 24 or 32 bytes: bad gossip key"},
		{b64(33), 0, "gossip: key: length 33, want 16, 24 or 32 bytes: bad gossip key"},
		{strings.TrimRight(b64(32), "="), 0, "gossip: key: not base64"},
	}
	for _, tt := range tests {
		key, err := DecodeKey(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("DecodeKey(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("DecodeKey(%q) error does not wrap ErrBadKey", tt.in)
			}
			continue
		}
		if err != nil || len(key) != tt.wantLen {
			t.Errorf("DecodeKey(%q) = %d bytes, %v; want %d", tt.in, len(key), err, tt.wantLen)
		}
	}
}
