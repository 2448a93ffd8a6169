package catalog

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseServiceDefinition: any input parses or fails without
// panicking; a definition that parses and validates marshals to JSON that
// parses back to an equal definition, and turns into a Service and
// checks LocalState accepts.
func FuzzParseServiceDefinition(f *testing.F) {
	for _, seed := range []string{
		`{"Name": "web"}`,
		`{"ID": "web1", "Name": "web", "Tags": ["a"], "Port": 8080, "Meta": {"k": "v"},
		  "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
		  "Weights": {"Passing": 3, "Warning": 1}, "EnableTagOverride": true,
		  "Check": {"HTTP": "http://localhost/", "Interval": "10s"}}`,
		`{"name": "web", "checks": [{"ttl": "1s", "status": "passing"}, {"tcp": "x:1", "interval": "1s"}]}`,
		`{"name": "web", "meta": [{"a": "b"}], "weights": [{"passing": 1}], "check": [{"ttl": "1s"}]}`,
		`{"Name": "p", "Kind": "connect-proxy", "Port": 1, "Proxy": {"DestinationServiceName": "web"}}`,
		`{"Name": "web", "Port": 1, "Connect": {"SidecarService": {"Proxy": {"Upstreams": [{"DestinationName": "db"}]}}}}`,
		`{"Name": "web", "Port": "8e1", "Tags": "x", "EnableTagOverride": "1"}`,
		`{"Name": "web", "Bogus": 1, "Port": 1, "port": 2}`,
		`[]`, `null`, `{"Name": 5}`, `{"Name": "a", "Check": {}}`,
		`{"Name": "a", "Check": {"ID": "\u0000", "TTL": "1s"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseServiceDefinition(data)
		if err != nil {
			if d != nil {
				t.Fatalf("got a definition with error %v", err)
			}
			return
		}
		if d.Validate() != nil {
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %+v: %v", d, err)
		}
		d2, err := ParseServiceDefinition(b)
		if err != nil {
			t.Fatalf("re-parse %s: %v", b, err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip through %s:\ngot  %+v\nwant %+v", b, d2, d)
		}
		if err := d2.Validate(); err != nil {
			t.Fatalf("re-parsed definition invalid: %v", err)
		}
		l := NewLocalState()
		if _, err := l.AddService(d.Service(), d.HealthChecks(), false); err != nil {
			t.Fatalf("LocalState refuses a valid definition: %v", err)
		}
		if sc, err := d.SidecarDefinition(21000); err == nil && sc != nil {
			if _, err := l.AddService(sc.Service(), sc.HealthChecks(), false); err != nil {
				t.Fatalf("LocalState refuses a valid sidecar: %v", err)
			}
		}
	})
}
