package main

import (
	"bytes"
	"strings"
	"testing"
)

func runOperator(t *testing.T, f *fakeConsul, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"operator", "raft", args[0], "-http-addr", f.addr()}, args[1:]...)
	code := realMain(full, &out, &errb)
	return code, out.String(), errb.String()
}

func TestOperatorRaftListPeers(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.peers = []map[string]any{
		{"ID": "e0c04dd8-2bb6-41c4-9f2b-6c2a5b1c3e01", "Node": "alice", "Address": "10.0.1.8:8300", "Leader": false, "Voter": true, "ProtocolVersion": "3"},
		{"ID": "c2b3a1f0-8f31-4d8e-9a59-2c7a6f1b0d02", "Node": "bob-the-server", "Address": "10.0.1.6:8300", "Leader": true, "Voter": true, "ProtocolVersion": "3"},
		{"ID": "old", "Node": "carol", "Address": "10.0.1.7:8300", "Leader": false, "Voter": false, "ProtocolVersion": ""},
		{"ID": "num", "Node": "dave", "Address": "10.0.1.9:8300", "Leader": false, "Voter": true, "ProtocolVersion": 3},
	}
	code, out, errs := runOperator(t, f, "list-peers")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := "" +
		"Node            ID                                    Address        State     Voter  RaftProtocol\n" +
		"alice           e0c04dd8-2bb6-41c4-9f2b-6c2a5b1c3e01  10.0.1.8:8300  follower  true   3\n" +
		"bob-the-server  c2b3a1f0-8f31-4d8e-9a59-2c7a6f1b0d02  10.0.1.6:8300  leader    true   3\n" +
		"carol           old                                   10.0.1.7:8300  follower  false  <=1\n" +
		"dave            num                                   10.0.1.9:8300  follower  true   3\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}

	if code, _, _ := runOperator(t, f, "list-peers", "-stale"); code != 0 {
		t.Errorf("-stale: exit %d", code)
	}
	f.mu.Lock()
	last := f.queries[len(f.queries)-1]
	f.mu.Unlock()
	if last != "GET /v1/operator/raft/configuration?stale=" {
		t.Errorf("-stale sent %q", last)
	}
}

func TestOperatorRaftRemovePeer(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	code, out, errs := runOperator(t, f, "remove-peer", "-id", "e0c04dd8")
	if code != 0 || out != "Removed peer with id \"e0c04dd8\"\n" {
		t.Errorf("-id: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = runOperator(t, f, "remove-peer", "-address", "10.0.1.8:8300")
	if code != 0 || out != "Removed peer with address \"10.0.1.8:8300\"\n" {
		t.Errorf("-address: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	f.mu.Lock()
	removed := strings.Join(f.removed, " ")
	f.mu.Unlock()
	if removed != "id=e0c04dd8 address=10.0.1.8%3A8300" {
		t.Errorf("removals sent: %q", removed)
	}

	f.mu.Lock()
	f.failPeerOps = true
	f.mu.Unlock()
	code, _, errs = runOperator(t, f, "remove-peer", "-id", "nope")
	if code != 1 || !strings.Contains(errs, "agent operator raft remove-peer: Error removing peer: agent answered 500") || !strings.Contains(errs, "was not found") {
		t.Errorf("refused removal: exit %d, stderr %q", code, errs)
	}
}

func TestOperatorBadInputs(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	// Each fails before any request, so no agent is needed.
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"operator alone", []string{"operator"}, "Subcommands:\n    raft"},
		{"unknown operator subcommand", []string{"operator", "autopilot"}, `agent operator: unknown subcommand "autopilot"`},
		{"raft alone", []string{"operator", "raft"}, "list-peers"},
		{"unknown raft subcommand", []string{"operator", "raft", "elect-me"}, `agent operator raft: unknown subcommand "elect-me"`},
		{"remove neither", []string{"operator", "raft", "remove-peer"}, "agent operator raft remove-peer: Error removing peer: an -id or -address is required"},
		{"remove both", []string{"operator", "raft", "remove-peer", "-id", "x", "-address", "y:1"}, "give -id or -address, not both"},
		{"remove extra arg", []string{"operator", "raft", "remove-peer", "-id", "x", "extra"}, "Too many arguments"},
		{"list extra arg", []string{"operator", "raft", "list-peers", "extra"}, "Too many arguments"},
		{"list unknown flag", []string{"operator", "raft", "list-peers", "-detailed"}, "flag provided but not defined: -detailed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, errb.String(), tc.want)
			}
		})
	}

	f.srv.Close()
	code, _, errs := runOperator(t, f, "list-peers")
	if code != 1 || !strings.Contains(errs, "agent operator raft list-peers: Error getting peers: cannot reach the agent") {
		t.Errorf("unreachable agent: exit %d, stderr %q", code, errs)
	}
}

func TestOperatorHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"operator", "-h"},
		{"operator", "raft", "-h"},
		{"operator", "raft", "list-peers", "-h"},
		{"operator", "raft", "remove-peer", "-h"},
	} {
		var out, errb bytes.Buffer
		if code := realMain(args, &out, &errb); code != 0 || out.Len()+errb.Len() == 0 {
			t.Errorf("%v: exit %d, no help printed", args, code)
		}
	}
}
