package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// GenerateKey returns a new random 32-byte (AES-256) gossip key in base64,
// the form `agent keygen` prints and -encrypt accepts.
func GenerateKey() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("gossip: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// DecodeKey decodes a base64 gossip key (standard alphabet, padded, as
// GenerateKey and `consul keygen` print it). Surrounding white space is
// ignored so keys read from files work.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("gossip: key: empty: %w", ErrBadKey)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip: key: not base64 (%v): %w", err, ErrBadKey)
	}
	if err := checkKeyLen(len(key)); err != "" {
		return nil, fmt.Errorf("gossip: key: %s: %w", err, ErrBadKey)
	}
	return key, nil
}

// checkKeyLen returns "" for an AES key length, else why not.
func checkKeyLen(n int) string {
	switch n {
	case 16, 24, 32:
		return ""
	}
	return fmt.Sprintf("length %d, want 16, 24 or 32 bytes", n)
}
