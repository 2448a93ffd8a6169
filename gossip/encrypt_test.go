package gossip

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEncryptedClusterForms(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	nodes := makeCluster(t, 3, func(i int, c *Config) { c.SecretKey = key })
	for _, nd := range nodes {
		if got := testutil.ToFloat64(nd.met.rejected); got != 0 {
			t.Errorf("%s rejected %v messages", nd.name, got)
		}
	}
}

func TestKeyMismatchCannotJoin(t *testing.T) {
	keyA := bytes.Repeat([]byte{1}, 32)
	keyB := bytes.Repeat([]byte{2}, 16)
	tests := []struct {
		name                string
		clusterKey, ownKey  []byte
		wantJoiner, wantRcv string // substrings of the join error and the receiver's log line
	}{
		{"wrong key", keyA, keyB,
			"no installed keys could decrypt the message (gossip encryption key likely mismatches)",
			": no installed key could decrypt it (gossip encryption key mismatch?)"},
		{"no key", keyA, nil,
			"remote state is encrypted and encryption is not configured (gossip encryption key likely mismatches)",
			": it is not encrypted and this member requires encryption (gossip encryption key mismatch?)"},
		{"key but cluster has none", nil, keyA,
			"encryption is configured but remote state is not encrypted (gossip encryption key likely mismatches)",
			": it is encrypted and this member has no gossip key (gossip encryption key mismatch?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster := makeCluster(t, 2, func(i int, c *Config) { c.SecretKey = tt.clusterKey })
			cfg := testConfig("intruder")
			cfg.SecretKey = tt.ownKey
			in := startNode(t, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := in.Join(ctx, []string{cluster[0].addr})
			if err == nil || n != 0 {
				t.Fatalf("Join = %d, %v; want an error", n, err)
			}
			t.Logf("join error: %v", err)
			if !errors.Is(err, ErrKeyMismatch) {
				t.Errorf("Join error does not wrap ErrKeyMismatch: %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantJoiner) || !strings.Contains(err.Error(), cluster[0].addr) {
				t.Errorf("Join error:\n got %v\nwant it to name %s and contain %q", err, cluster[0].addr, tt.wantJoiner)
			}

			rcv := cluster[0]
			waitFor(t, 5*time.Second, "receiver logs the rejection", func() error {
				if _, ok := rcv.logs.find("gossip: rejected message from 127.0.0.1:", tt.wantRcv, "level=ERROR"); !ok {
					return errors.New("no such line")
				}
				return nil
			})
			if got := rcv.logs.count("gossip: rejected message from"); got != 1 {
				t.Errorf("receiver logged %d rejection lines, want 1", got)
			}
			if got := testutil.ToFloat64(rcv.met.rejected); got < 1 {
				t.Errorf("rejected messages counted: %v, want >= 1", got)
			}
			for _, nd := range cluster {
				if _, ok := nd.Member("intruder"); ok {
					t.Errorf("%s lists the intruder", nd.name)
				}
			}
			if got := in.NumAlive(); got != 1 {
				t.Errorf("intruder sees %d alive, want 1", got)
			}
		})
	}
}
