// Package version holds the build's version, set at link time.
package version

// Version is the agent's release version. Overridden with
// -ldflags "-X github.com/outrigger/outrigger/internal/version.Version=...".
var Version = "0.1.0"

// Revision is the VCS revision, set at link time when known.
var Revision = ""

// Protocol is the gossip protocol version this build speaks, reported in
// members' Protocol column (Consul reports 2 for its Serf protocol).
const Protocol = 2

// String returns "Outrigger vX (rev)" as printed by `agent version`.
func String() string {
	s := "Outrigger v" + Version
	if Revision != "" {
		s += " (" + Revision + ")"
	}
	return s
}
