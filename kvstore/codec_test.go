package kvstore

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func sampleCommands() []Command {
	return []Command{
		{Type: CmdKV, Time: 12345, KV: KVOp{Verb: VerbSet, Key: "a/b", Value: []byte("v"), Flags: 1 << 63}},
		{Type: CmdKV, Time: -5, KV: KVOp{Verb: VerbCAS, Key: "a", Index: 99}},
		{Type: CmdKV, KV: KVOp{Verb: VerbLock, Key: "l", Value: []byte{0, 1, 2}, Session: "sess"}},
		{Type: CmdKV, KV: KVOp{Verb: VerbDeleteTree}},
		{Type: CmdTxn, Time: 1, Ops: []KVOp{
			{Verb: VerbSet, Key: "x", Value: []byte("1")},
			{Verb: VerbCheckSession, Key: "y", Session: "s"},
			{Verb: VerbDeleteCAS, Key: "z", Index: 3},
		}},
		{Type: CmdTxn},
		{Type: CmdSessionCreate, Time: 7, Session: Session{
			ID: "11111111-2222-3333-4444-555555555555", Name: "lock", Node: "n1",
			NodeChecks: []string{"serfHealth"}, ServiceChecks: []ServiceCheck{{ID: "web", Namespace: "default"}},
			LockDelay: 15 * time.Second, Behavior: BehaviorDelete, TTL: 30 * time.Second,
		}},
		{Type: CmdSessionCreate, Session: Session{ID: "plain"}},
		{Type: CmdSessionDestroy, Session: Session{ID: "x"}},
		{Type: CmdReapTombstones, ReapIndex: 1 << 40},
		{Type: CmdCatalogRegister, Time: 9, Register: &CatalogRegistration{
			Node: Node{ID: "11111111-1111-4111-8111-111111111111", Node: "n1", Address: "10.0.0.1", Datacenter: "dc1",
				TaggedAddresses: map[string]string{"lan": "10.0.0.1", "wan": "1.2.3.4"}, Meta: map[string]string{"rack": "a"}},
			Service: &NodeService{ID: "web-1", Service: "web", Tags: []string{"v1", "prod"}, Address: "10.0.0.2",
				TaggedAddresses: map[string]ServiceAddress{"lan": {Address: "10.0.0.2", Port: 80}, "wan": {Address: "x", Port: -1}},
				Meta:            map[string]string{"k": "v"}, Port: 65535, Kind: "connect-proxy", Proxy: []byte(`{"a":1}`),
				Weights: Weights{Passing: 10, Warning: -3}, EnableTagOverride: true},
			Checks: []*HealthCheck{
				{CheckID: "serfHealth", Name: "Serf", Status: "passing"},
				{Node: "n1", CheckID: "c", Name: "n", Status: "critical", Notes: "x", Output: "y", ServiceID: "web-1",
					ServiceName: "web", ServiceTags: []string{"t"}, Type: "http", Definition: []byte(`{"HTTP":"h"}`)},
			},
		}},
		{Type: CmdCatalogRegister, Register: &CatalogRegistration{Node: Node{Node: "n"}, SkipNodeUpdate: true}},
		{Type: CmdCatalogDeregister, Deregister: &CatalogDeregistration{Node: "n1", ServiceID: "s", CheckID: "c"}},
		{Type: CmdCatalogSync, Time: 3, CatalogOps: []CatalogOp{
			{Register: &CatalogRegistration{Node: Node{Node: "n1", Address: "a"}, Service: &NodeService{Service: "s"}}},
			{Deregister: &CatalogDeregistration{Node: "n1", CheckID: "old"}},
		}},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		t.Run(c.Type.String(), func(t *testing.T) {
			got, err := DecodeCommand(EncodeCommand(&c))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(*got, c) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", *got, c)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	good := EncodeCommand(&sampleCommands()[4])
	// Every truncation of a catalog registration fails cleanly too.
	reg := EncodeCommand(&sampleCommands()[10])
	for n := range reg {
		if _, err := DecodeCommand(reg[:n]); err == nil {
			t.Fatalf("catalog registration truncated to %d bytes: decoded without error", n)
		}
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"type only", []byte{byte(CmdKV)}},
		{"bad version", []byte{byte(CmdKV), 9, 0}},
		{"unknown type", []byte{77, commandVersion, 0}},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"huge length", []byte{byte(CmdKV), commandVersion, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"huge count", []byte{byte(CmdTxn), commandVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad verb", []byte{byte(CmdKV), commandVersion, 0, 200}},
		{"bad bool", []byte{byte(CmdCatalogRegister), commandVersion, 0, 0, 0, 0, 0, 0, 0, 2}},
		{"unknown catalog op", []byte{byte(CmdCatalogSync), commandVersion, 0, 1, 9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := DecodeCommand(c.b); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("DecodeCommand(%x) err = %v, want ErrInvalidCommand", c.b, err)
			}
		})
	}
	// Every truncation of a valid command fails cleanly.
	for n := range good {
		if _, err := DecodeCommand(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded without error", n)
		}
	}
	// An unknown type marked ignorable is reported as such.
	if _, err := DecodeCommand([]byte{ignorableFlag | 77, commandVersion, 0}); !errors.Is(err, errUnknownIgnorable) {
		t.Fatalf("ignorable unknown type: err %v", err)
	}
}

// FuzzDecodeCommand checks that decoding never panics and that whatever
// decodes re-encodes to a command that decodes the same.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		f.Add(EncodeCommand(&c))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(CmdTxn), commandVersion, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := DecodeCommand(EncodeCommand(c))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", c, again)
		}
		// Applying whatever decodes must not panic either.
		s := NewStateStore()
		_, _ = s.apply(1, &Command{Type: CmdSessionCreate, Session: Session{ID: "s", Node: "n1"}})
		_, _ = s.apply(2, &Command{Type: CmdCatalogRegister, Register: &CatalogRegistration{
			Node: Node{Node: "n1", Address: "a"}, Service: &NodeService{Service: "web"}}})
		_, _ = s.apply(3, c)
	})
}
