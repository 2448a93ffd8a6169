package gossip

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPeerStore(t *testing.T) {
	dir := t.TempDir()
	s, err := openPeerStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.load(); err != nil || got != nil {
		t.Fatalf("load of a missing file = %v, %v", got, err)
	}
	peers := []peerEntry{{"a", "10.0.0.1:8301"}, {"b", "10.0.0.2:8301"}}
	if err := s.save(peers); err != nil {
		t.Fatal(err)
	}
	if err := s.save(nil); err != nil { // must not forget the old peers
		t.Fatal(err)
	}
	s2, _ := openPeerStore(dir)
	got, err := s2.load()
	if err != nil || len(got) != 2 || got[1] != peers[1] {
		t.Fatalf("reloaded %v, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "gossip", "peers.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("peers.json: %v %v", fi.Mode(), err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "gossip", "peers-*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}

	if err := os.WriteFile(filepath.Join(dir, "gossip", "peers.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.load(); err == nil {
		t.Error("corrupt file loaded without error")
	}
}
