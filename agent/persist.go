package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/health"
)

// Services and checks registered through the HTTP API are kept in the
// data directory (DataDir/services and DataDir/checks, a JSON file per
// registration named by a hash of its ID) and registered again when the
// agent restarts, as Consul does: a restarted agent must not make
// anti-entropy deregister what tools such as registrators put there.
// Services from the configuration are not kept (the configuration has
// them); -dev keeps nothing.

type persisted struct {
	// Definition is the registration as the API took it.
	Definition json.RawMessage
	// ReplaceExistingChecks is the registration's ?replace-existing-checks.
	ReplaceExistingChecks bool `json:",omitempty"`
}

func (a *Agent) persistDir(kind string) string {
	if a.cfg.Dev || a.cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(a.cfg.DataDir, kind)
}

func persistName(id string) string {
	sum := sha256.Sum256([]byte(foldID(id)))
	return hex.EncodeToString(sum[:16]) + ".json"
}

// persist writes v for id atomically (temp file, fsync, rename).
func (a *Agent) persist(kind, id string, v persisted) error {
	dir := a.persistDir(kind)
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: keep %s %q: %w", strings.TrimSuffix(kind, "s"), id, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent: keep %s %q: %w", strings.TrimSuffix(kind, "s"), id, err)
	}
	path := filepath.Join(dir, persistName(id))
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err == nil {
		_, err = tmp.Write(b)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("agent: keep %s %q: %w", strings.TrimSuffix(kind, "s"), id, err)
	}
	return nil
}

func (a *Agent) unpersist(kind, id string) {
	dir := a.persistDir(kind)
	if dir == "" {
		return
	}
	if err := os.Remove(filepath.Join(dir, persistName(id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove kept registration", "kind", kind, "id", id, "err", err)
	}
}

// loadPersisted reads every kept registration of kind.
func (a *Agent) loadPersisted(kind string) []persisted {
	dir := a.persistDir(kind)
	if dir == "" {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil
	}
	var out []persisted
	for _, f := range files {
		b, err := os.ReadFile(f)
		var p persisted
		if err == nil {
			err = json.Unmarshal(b, &p)
		}
		if err != nil {
			a.log.Error("unreadable kept registration; skipped", "file", f, "err", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// restorePersisted registers the kept services, then the kept checks,
// after the configuration's. One that cannot be registered any more (a
// script check with script checks now disabled, say) is logged and
// dropped; the configuration's own services win over a kept one with the
// same ID.
func (a *Agent) restorePersisted() {
	fromConfig := map[string]bool{}
	for _, d := range a.configServices {
		fromConfig[foldID(d.ID)] = true
	}
	for _, p := range a.loadPersisted("services") {
		def, err := catalog.ParseServiceDefinition(p.Definition)
		if err == nil && fromConfig[foldID(def.ID)] {
			continue
		}
		if err == nil {
			err = a.registerService(def, p.ReplaceExistingChecks, false)
		}
		if err != nil {
			a.log.Error("could not restore a service registered before the restart; dropped", "err", err)
			if def != nil {
				a.unpersist("services", def.ID)
			}
			continue
		}
		a.log.Info("restored service registered before the restart", "service", def.ID)
	}
	for _, p := range a.loadPersisted("checks") {
		def, err := health.ParseCheckDefinition(p.Definition)
		if err == nil {
			err = a.registerCheck(def, false)
		}
		if err != nil {
			a.log.Error("could not restore a check registered before the restart; dropped", "err", err)
			if def.ID != "" {
				a.unpersist("checks", def.ID)
			}
			continue
		}
		a.log.Info("restored check registered before the restart", "check", def.ID)
	}
}
