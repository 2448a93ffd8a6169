package httpapi

import (
	"fmt"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/outrigger/outrigger/kvstore"
)

// Every refused request answers a 4xx naming the problem and leaves the
// store as it was.
func TestBadInput(t *testing.T) {
	e := startKV(t, newTestStore(t, true), nil)
	if _, err := e.client.KV().Put(&consul.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatal(err)
	}
	sess, _, err := e.client.Session().Create(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tooMany := "[" + strings.TrimSuffix(strings.Repeat(`{"KV":{"Verb":"set","Key":"x","Value":"dg=="}},`, kvstore.MaxTxnOps+1), ",") + "]"

	cases := []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"bad index", "GET", "/v1/kv/k?index=abc", "", 400, `Invalid index "abc"`},
		{"negative index", "GET", "/v1/kv/k?index=-1", "", 400, `Invalid index "-1"`},
		{"bad wait", "GET", "/v1/kv/k?index=1&wait=forever", "", 400, `Invalid wait time "forever"`},
		{"stale and consistent", "GET", "/v1/kv/k?stale&consistent", "", 400, "?stale with ?consistent"},
		{"session list stale and consistent", "GET", "/v1/session/list?stale&consistent", "", 400, "?stale with ?consistent"},
		{"session bad index", "GET", "/v1/session/list?index=x", "", 400, `Invalid index "x"`},
		{"missing key", "GET", "/v1/kv/", "", 400, "Missing key name"},
		{"bad flags", "PUT", "/v1/kv/k?flags=red", "w", 400, `Invalid flags "red"`},
		{"flags overflow", "PUT", "/v1/kv/k?flags=18446744073709551616", "w", 400, "Invalid flags"},
		{"bad cas", "PUT", "/v1/kv/k?cas=-3", "w", 400, `Invalid cas "-3"`},
		{"bad delete cas", "DELETE", "/v1/kv/k?cas=one", "", 400, `Invalid cas "one"`},
		{"conflicting flags", "PUT", "/v1/kv/k?cas=1&acquire=" + sess, "w", 400, "Conflicting flags"},
		{"acquire without session", "PUT", "/v1/kv/k?acquire", "w", 400, "Missing session ID"},
		{"acquire unknown session", "PUT", "/v1/kv/k?acquire=nope", "w", 400, "invalid session"},
		{"put missing key", "PUT", "/v1/kv/", "w", 400, "Missing key name"},
		{"invalid utf-8 key", "PUT", "/v1/kv/a%FFb", "w", 400, "not valid UTF-8"},
		{"control character key", "PUT", "/v1/kv/a%00b", "w", 400, "control character"},
		{"oversized value", "PUT", "/v1/kv/k", strings.Repeat("x", kvstore.MaxValueSize+1), 413, fmt.Sprintf("at most %d bytes", kvstore.MaxValueSize)},
		{"much oversized value", "PUT", "/v1/kv/k", strings.Repeat("x", 3*kvstore.MaxValueSize), 413, "too large"},
		{"txn bad json", "PUT", "/v1/txn", `[{"KV":{"Verb":"set"`, 400, "Failed to parse body"},
		{"txn bad base64", "PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"k","Value":"%%%"}}]`, 400, "base64"},
		{"txn unknown verb", "PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"k","Value":"dg=="}},{"KV":{"Verb":"upsert","Key":"k"}}]`, 400, `unknown KV verb "upsert"`},
		{"txn too many ops", "PUT", "/v1/txn", tooMany, 413, "too many operations"},
		{"txn node op", "PUT", "/v1/txn", `[{"Node":{"Verb":"set","Node":{"Node":"x"}}}]`, 400, "not supported"},
		{"txn stale and consistent", "PUT", "/v1/txn?stale&consistent", `[{"KV":{"Verb":"get","Key":"k"}}]`, 400, "?stale with ?consistent"},
		{"txn body too large", "PUT", "/v1/txn", strings.Repeat(" ", maxTxnBody+1), 413, "too large"},
		{"session bad json", "PUT", "/v1/session/create", `{"TTL":`, 400, "Request decode failed"},
		{"session bad behavior", "PUT", "/v1/session/create", `{"Behavior":"explode"}`, 400, `Invalid Behavior setting "explode"`},
		{"session bad TTL", "PUT", "/v1/session/create", `{"TTL":"soon"}`, 400, `Session TTL "soon" invalid`},
		{"session TTL too short", "PUT", "/v1/session/create", `{"TTL":"5s"}`, 400, "TTL"},
		{"session TTL too long", "PUT", "/v1/session/create", `{"TTL":"86401s"}`, 400, "TTL"},
		{"session lock delay too long", "PUT", "/v1/session/create", `{"LockDelay":"2m"}`, 400, "LockDelay"},
		{"session lock delay negative", "PUT", "/v1/session/create", `{"LockDelay":-5}`, 400, "LockDelay"},
		{"session lock delay object", "PUT", "/v1/session/create", `{"LockDelay":{}}`, 400, "LockDelay"},
		{"session renew unknown", "PUT", "/v1/session/renew/nope", "", 404, "not found"},
		{"session destroy without ID", "PUT", "/v1/session/destroy/", "", 400, "Missing session"},
		{"session node without name", "GET", "/v1/session/node/", "", 400, "Missing node name"},
		{"raft peer without id", "DELETE", "/v1/operator/raft/peer", "", 400, "Must specify"},
		{"raft peer unknown", "DELETE", "/v1/operator/raft/peer?id=ghost", "", 404, "not found"},
	}
	before := contents(t, e.store)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := call(t, tc.method, e.base+tc.path, strings.NewReader(tc.body))
			if code != tc.code || !strings.Contains(body, tc.msg) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, code, trim(body), tc.code, tc.msg)
			}
			if after := contents(t, e.store); after != before {
				t.Errorf("%s %s changed the store:\nbefore %s\nafter  %s", tc.method, tc.path, before, after)
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
