package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// maxPersistedPeers bounds peers.json; a restarted agent needs one live
// peer to rejoin, more only in case most have gone.
const maxPersistedPeers = 128

// peerEntry is one remembered peer.
type peerEntry struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // ip:port
}

type peerFile struct {
	Peers []peerEntry `json:"peers"`
}

// peerStore keeps the known peers in DataDir/gossip/peers.json, written
// atomically (temporary file and rename) so a crash leaves the old or the
// new list, never half of one.
type peerStore struct {
	path string

	mu   sync.Mutex
	last []peerEntry // last written, to skip identical writes
}

func openPeerStore(dataDir string) (*peerStore, error) {
	dir := filepath.Join(dataDir, "gossip")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gossip: data dir: %w", err)
	}
	return &peerStore{path: filepath.Join(dir, "peers.json")}, nil
}

// load returns the remembered peers; none if the file does not exist.
func (s *peerStore) load() ([]peerEntry, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gossip: read peers: %w", err)
	}
	var f peerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("gossip: read peers: %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.last = f.Peers
	s.mu.Unlock()
	return f.Peers, nil
}

// save replaces the file with peers, unless they are what it holds or
// there are none: an agent stopped before it rejoined anyone must not
// forget the peers of its previous run.
func (s *peerStore) save(peers []peerEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(peers) == 0 || slices.Equal(s.last, peers) {
		return nil
	}
	b, err := json.MarshalIndent(peerFile{Peers: peers}, "", "  ")
	if err != nil {
		return fmt.Errorf("gossip: write peers: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "peers-*.json")
	if err != nil {
		return fmt.Errorf("gossip: write peers: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err = tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("gossip: write peers: %w", err)
	}
	s.last = slices.Clone(peers)
	return nil
}
