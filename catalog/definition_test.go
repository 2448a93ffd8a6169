package catalog

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"
	"github.com/outrigger/outrigger/health"
)

func mustParse(t *testing.T, body string) *ServiceDefinition {
	t.Helper()
	d, err := ParseServiceDefinition([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return d
}

// rawMap decodes a check's Raw for comparison.
func rawMap(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("raw %s: %v", raw, err)
	}
	return m
}

func TestParseServiceDefinition(t *testing.T) {
	tests := []struct {
		name string
		body string
		want ServiceDefinition // Checks compared by ID, Name, ServiceID, Status, Notes
	}{
		{"minimal", `{"Name": "web"}`,
			ServiceDefinition{ID: "web", Name: "web", Weights: Weights{1, 1}}},
		{"camel case", `{
			"ID": "web1", "Name": "web", "Tags": ["a", "b"], "Address": "10.0.0.1",
			"TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
			"Meta": {"version": "1"}, "Port": 8080, "Kind": "", "EnableTagOverride": true,
			"Weights": {"Passing": 10, "Warning": 2},
			"Check": {"HTTP": "http://localhost:8080/health", "Interval": "10s"},
			"Token": "secret"}`,
			ServiceDefinition{ID: "web1", Name: "web", Tags: []string{"a", "b"}, Address: "10.0.0.1",
				TaggedAddresses: map[string]ServiceAddress{"lan": {"10.0.0.1", 80}},
				Meta:            map[string]string{"version": "1"}, Port: 8080, EnableTagOverride: true,
				Weights: Weights{10, 2}, Token: "secret",
				Checks: []CheckDefinition{{ID: "service:web1", Name: "Service 'web' check", ServiceID: "web1"}}}},
		{"snake case and weak values", `{
			"name": "web", "id": "w", "enable_tag_override": "true",
			"tagged_addresses": {"wan": {"address": "1.2.3.4", "port": "443"}},
			"meta": {"k": 5}, "port": "8080", "tags": "solo",
			"checks": [{"ttl": "30s", "status": "passing", "notes": "hi"},
			           {"tcp": "localhost:80", "interval": "5s", "check_id": "tcp1", "name": "TCP"}]}`,
			ServiceDefinition{ID: "w", Name: "web", Tags: []string{"solo"}, EnableTagOverride: true,
				TaggedAddresses: map[string]ServiceAddress{"wan": {"1.2.3.4", 443}},
				Meta:            map[string]string{"k": "5"}, Port: 8080, Weights: Weights{1, 1},
				Checks: []CheckDefinition{
					{ID: "service:w:1", Name: "Service 'web' check", ServiceID: "w", Status: "passing", Notes: "hi"},
					{ID: "tcp1", Name: "TCP", ServiceID: "w"}}}},
		{"HCL blocks as one-element lists", `{
			"name": "web", "meta": [{"a": "b"}], "weights": [{"passing": 3, "warning": 1}],
			"tagged_addresses": [{"lan": [{"address": "10.1.1.1", "port": 1}]}],
			"check": [{"ttl": "10s"}]}`,
			ServiceDefinition{ID: "web", Name: "web", Meta: map[string]string{"a": "b"}, Weights: Weights{3, 1},
				TaggedAddresses: map[string]ServiceAddress{"lan": {"10.1.1.1", 1}},
				Checks:          []CheckDefinition{{ID: "service:web", Name: "Service 'web' check", ServiceID: "web"}}}},
		{"Check and Checks: Check first, numbered", `{"Name": "web",
			"Checks": [{"TTL": "1s"}], "Check": {"TTL": "2s"}}`,
			ServiceDefinition{ID: "web", Name: "web", Weights: Weights{1, 1},
				Checks: []CheckDefinition{
					{ID: "service:web:1", Name: "Service 'web' check", ServiceID: "web"},
					{ID: "service:web:2", Name: "Service 'web' check", ServiceID: "web"}}}},
		{"nulls and an empty Check are nothing", `{"Name": "web", "Check": {}, "Checks": null, "Tags": null, "Meta": {}, "Weights": null, "Namespace": "default", "Partition": ""}`,
			ServiceDefinition{ID: "web", Name: "web", Weights: Weights{1, 1}}},
		{"check ServiceID is the service's", `{"Name": "web", "Checks": [{"TTL": "1s", "ServiceID": "other", "ID": "x"}]}`,
			ServiceDefinition{ID: "web", Name: "web", Weights: Weights{1, 1},
				Checks: []CheckDefinition{{ID: "x", Name: "Service 'web' check", ServiceID: "web"}}}},
		{"numbers in many spellings", `{"Name": "web", "Port": 8e1, "Weights": {"Passing": "2", "Warning": 1.0}}`,
			ServiceDefinition{ID: "web", Name: "web", Port: 80, Weights: Weights{2, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.body)
			var gotChecks []CheckDefinition
			for _, c := range got.Checks {
				m := rawMap(t, c.Raw)
				if m["CheckID"] != c.ID || m["Name"] != c.Name || m["ServiceID"] != c.ServiceID {
					t.Errorf("Raw %s does not carry CheckID %q, Name %q, ServiceID %q", c.Raw, c.ID, c.Name, c.ServiceID)
				}
				for k := range m {
					if k != "CheckID" && identityKeys[canonicalKey(k)] {
						if k != "Name" && k != "ServiceID" {
							t.Errorf("Raw %s keeps identity key %q", c.Raw, k)
						}
					}
				}
				c.Raw = nil
				gotChecks = append(gotChecks, c)
			}
			got.Checks = gotChecks
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseServiceDefinitionErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
		unsupported      bool
	}{
		{"not an object", `[]`, `catalog: service: parse: want a JSON object, got an array`, false},
		{"null", `null`, `catalog: service: parse: want a JSON object, got null`, false},
		{"trailing data", `{"Name": "web"} x`, `catalog: service: parse: trailing data after the JSON value`, false},
		{"bad JSON", `{"Name": `, `catalog: service: parse: unexpected EOF`, false},
		{"port not a number", `{"Name": "web", "Port": "abc"}`, `catalog: service "web": Port: "abc" is not an integer (or out of range)`, false},
		{"port too big for an int", `{"Name": "web", "Port": 1e12}`, `catalog: service "web": Port: 1e12 is not an integer (or out of range)`, false},
		{"unknown key", `{"Name": "web", "Bogus": 1}`, `catalog: service "web": Bogus: unknown key`, false},
		{"unsupported", `{"Name": "web", "SocketPath": "/tmp/s"}`, `catalog: service "web": SocketPath: Unix socket services are not supported`, true},
		{"namespace", `{"Name": "web", "Namespace": "team-a"}`, `catalog: service "web": Namespace: namespaces are not supported`, true},
		{"conflicting spellings", `{"Name": "web", "Port": 1, "port": 2}`, `catalog: service "web": port: conflicts with "Port": both set Port`, false},
		{"tags", `{"Name": "web", "Tags": [1, {}]}`, `catalog: service "web": Tags: element 1 of [1,{}] is not a string`, false},
		{"meta value", `{"Name": "web", "Meta": {"a": {}}}`, `catalog: service "web": Meta["a"]: {} is not a string`, false},
		{"weights not an object", `{"Name": "web", "Weights": 5}`, `catalog: service "web": Weights: 5 is not an object`, false},
		{"weights key", `{"Name": "web", "Weights": {"Passing": 1, "Critical": 1}}`, `catalog: service "web": Weights.Critical: unknown key`, false},
		{"weights twice", `{"Name": "web", "Weights": [{"Passing": 1}, {"Passing": 2}]}`, `catalog: service "web": Weights: given 2 times; want one object`, false},
		{"check not an object", `{"Name": "web", "Checks": [5]}`, `catalog: service "web": Checks[0]: 5 is not an object`, false},
		{"check field type", `{"Name": "web", "Check": {"Status": 3.5, "TTL": "1s"}}`, ``, false},
		{"check ID spellings conflict", `{"Name": "web", "Check": {"ID": "a", "CheckID": "b"}}`, `catalog: service "web": Check.ID: conflicts with "Check.CheckID": both set CheckID`, false},
		{"nested sidecar", `{"Name": "web", "Connect": {"SidecarService": {"Connect": {"SidecarService": {}}}}}`,
			`catalog: service "web": Connect.SidecarService.Connect.SidecarService: a sidecar service cannot have a sidecar service`, false},
		{"managed proxy", `{"Name": "web", "Connect": {"Proxy": {"x": 1}}}`, `catalog: service "web": Connect.Proxy: managed proxies are not supported (use SidecarService)`, true},
		{"connect key", `{"Name": "web", "Connect": {"Sidecar": {}}}`, `catalog: service "web": Connect.Sidecar: unknown key`, false},
		{"tagged address key", `{"Name": "web", "TaggedAddresses": {"lan": {"Addr": "x"}}}`, `catalog: service "web": TaggedAddresses["lan"].Addr: unknown key`, false},
		{"bool", `{"Name": "web", "EnableTagOverride": "maybe"}`, `catalog: service "web": EnableTagOverride: "maybe" is not a boolean`, false},
		{"several, unnamed", `{"Port": "x", "Bogus": 1}`,
			"catalog: service: Bogus: unknown key\ncatalog: service: Port: \"x\" is not an integer (or out of range)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseServiceDefinition([]byte(tt.body))
			if tt.want == "" { // a number where a string is wanted is fine (weak decoding)
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if d.Checks[0].Status != "3.5" {
					t.Fatalf("Status %q", d.Checks[0].Status)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", err.Error(), tt.want)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("errors.Is(err, ErrInvalidDefinition) is false")
			}
			if errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", !tt.unsupported, tt.unsupported)
			}
		})
	}
}

func TestValidateServiceDefinition(t *testing.T) {
	long := strings.Repeat("x", 513)
	tests := []struct{ name, body, want string }{
		{"missing name", `{}`, `catalog: service: Name: missing`},
		{"port", `{"Name": "web", "Port": 70000}`, `catalog: service "web": Port: 70000 is out of range 0-65535`},
		{"kind", `{"Name": "web", "Kind": "foo"}`, `catalog: service "web": Kind: "foo" is not a service kind (want connect-proxy, mesh-gateway, terminating-gateway, ingress-gateway, api-gateway or none)`},
		{"connect-proxy needs port and destination", `{"Name": "p", "Kind": "connect-proxy"}`,
			"catalog: service \"p\": Port: missing (required for a connect-proxy)\ncatalog: service \"p\": Proxy.DestinationServiceName: missing (required for a connect-proxy)"},
		{"connect-proxy with a sidecar", `{"Name": "p", "Kind": "connect-proxy", "Port": 1, "Proxy": {"destination_service_name": "web"}, "Connect": {"SidecarService": {}}}`,
			`catalog: service "p": Connect.SidecarService: not allowed on a connect-proxy`},
		{"unspecified address", `{"Name": "web", "Address": "0.0.0.0"}`, `catalog: service "web": Address: "0.0.0.0" is an unspecified address (give the address clients should use, or none for the node's)`},
		{"tagged ipv4", `{"Name": "web", "TaggedAddresses": {"lan_ipv4": {"Address": "::1", "Port": 1}}}`, `catalog: service "web": TaggedAddresses["lan_ipv4"].Address: "::1" is not an IPv4 address`},
		{"tagged ipv6", `{"Name": "web", "TaggedAddresses": {"wan_ipv6": {"Address": "1.2.3.4"}}}`, `catalog: service "web": TaggedAddresses["wan_ipv6"].Address: "1.2.3.4" is not an IPv6 address`},
		{"tagged port", `{"Name": "web", "TaggedAddresses": {"lan": {"Address": "a.example", "Port": -1}}}`, `catalog: service "web": TaggedAddresses["lan"].Port: -1 is out of range 0-65535`},
		{"meta reserved", `{"Name": "web", "Meta": {"consul-version": "1"}}`, `catalog: service "web": Meta["consul-version"]: keys starting with "consul-" are reserved`},
		{"meta key chars", `{"Name": "web", "Meta": {"a b": "1"}}`, `catalog: service "web": Meta["a b"]: key has characters other than letters, digits, '_' and '-'`},
		{"meta value length", `{"Name": "web", "Meta": {"k": "` + long + `"}}`, `catalog: service "web": Meta["k"]: value longer than 512 characters`},
		{"weights", `{"Name": "web", "Weights": {"Passing": 0, "Warning": -1}}`,
			"catalog: service \"web\": Weights.Passing: 0 is below the minimum 1\ncatalog: service \"web\": Weights.Warning: -1 is negative"},
		{"check status", `{"Name": "web", "Check": {"TTL": "1s", "Status": "ok"}}`, `catalog: service "web": Checks[0].Status: "ok" is not a check status (want passing, warning or critical)`},
		{"duplicate check IDs", `{"Name": "web", "Checks": [{"ID": "c", "TTL": "1s"}, {"ID": "C", "TTL": "1s"}]}`, `catalog: service "web": Checks[1].CheckID: "C" is also the ID of Checks[0]`},
		{"reserved check ID", `{"Name": "web", "Check": {"CheckID": "serfHealth", "TTL": "1s"}}`, `catalog: service "web": Checks[0].CheckID: "serfHealth" is reserved`},
		{"sidecar kind", `{"Name": "web", "Connect": {"SidecarService": {"Kind": "mesh-gateway", "Port": 5}}}`, `catalog: service "web": Connect.SidecarService.Kind: "mesh-gateway": a sidecar service is a connect-proxy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParse(t, tt.body)
			err := d.Validate()
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", err.Error(), tt.want)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("errors.Is(err, ErrInvalidDefinition) is false")
			}
		})
	}

	t.Run("too many meta pairs", func(t *testing.T) {
		d := &ServiceDefinition{Name: "web", Weights: DefaultWeights, Meta: map[string]string{}}
		for i := range MetaMaxPairs + 1 {
			d.Meta[strings.Repeat("k", i+1)] = "v"
		}
		d.FillDefaults()
		if err := d.Validate(); err == nil || err.Error() != `catalog: service "web": Meta: 65 pairs; at most 64 are allowed` {
			t.Errorf("got %v", err)
		}
	})
}

func TestWarnings(t *testing.T) {
	d := mustParse(t, `{"Name": "web_1", "Tags": ["v1.2", "ok"]}`)
	got := d.Warnings()
	if len(got) != 2 || !strings.Contains(got[0], `service name "web_1"`) || !strings.Contains(got[1], `service tag "v1.2"`) {
		t.Errorf("got %q", got)
	}
	if w := mustParse(t, `{"Name": "web", "Tags": ["v1"]}`).Warnings(); len(w) != 0 {
		t.Errorf("got %q, want none", w)
	}
}

func TestServicesFromConfig(t *testing.T) {
	// Shapes as config.Config.Extra holds them: ints, one-element lists
	// for HCL blocks.
	extra := map[string]any{
		"service": []any{map[string]any{"name": "web", "port": 80, "meta": []any{map[string]any{"v": "1"}}}},
		"services": []any{
			map[string]any{"name": "db", "port": 5432.0, "checks": []any{
				map[string]any{"tcp": "localhost:5432", "interval": "10s"},
				map[string]any{"ttl": "30s"},
			}},
		},
	}
	defs, err := ServicesFromConfig(extra)
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 2 || defs[0].ID != "web" || defs[0].Port != 80 || defs[0].Meta["v"] != "1" ||
		defs[1].ID != "db" || defs[1].Port != 5432 || len(defs[1].Checks) != 2 || defs[1].Checks[1].ID != "service:db:2" {
		t.Fatalf("got %+v", defs)
	}

	extra["services"] = append(extra["services"].([]any),
		map[string]any{"name": "WEB"},
		"nonsense",
		map[string]any{"name": "x", "port": 99999},
	)
	_, err = ServicesFromConfig(extra)
	want := `catalog: services[1]: service "WEB": ID: "WEB" is also the ID of service[0]` + "\n" +
		`catalog: services[2]: service: "nonsense" is not an object` + "\n" +
		`catalog: services[3]: service "x": Port: 99999 is out of range 0-65535`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestDefinitionHealthChecks(t *testing.T) {
	d := mustParse(t, `{"Name": "web", "Tags": ["t"], "Checks": [
		{"http": "http://localhost/health", "interval": "10s", "tls_skip_verify": true, "token": "s", "status": "warning", "custom": 1},
		{"args": ["/bin/true"], "interval": "1m", "name": "script"}]}`)
	hc := d.HealthChecks()
	if len(hc) != 2 {
		t.Fatalf("got %d checks", len(hc))
	}
	if hc[0].CheckID != "service:web:1" || hc[0].Type != "http" || hc[0].Status != "warning" || hc[0].ServiceID != "web" || hc[0].ServiceName != "web" {
		t.Errorf("check 0: %+v", hc[0])
	}
	if got := string(hc[0].Definition); got != `{"HTTP":"http://localhost/health","Interval":"10s","TLSSkipVerify":true,"custom":1}` {
		t.Errorf("Definition %s", got)
	}
	if hc[1].Type != "script" || hc[1].Name != "script" || hc[1].Status != "" {
		t.Errorf("check 1: %+v", hc[1])
	}

	// Raw is a complete definition for the health package, whatever the
	// spelling of the keys.
	for i, c := range d.Checks {
		hd, err := health.ParseCheckDefinition(c.Raw)
		if err != nil {
			if i == 0 { // "custom" is not a health key
				continue
			}
			t.Fatalf("health parse %s: %v", c.Raw, err)
		}
		if hd.ID != c.ID || hd.Name != c.Name || hd.ServiceID != "web" {
			t.Errorf("health sees %q %q %q", hd.ID, hd.Name, hd.ServiceID)
		}
	}
	d = mustParse(t, `{"name": "web", "check": {"check_id": "h", "http": "http://x/", "interval": "5s", "service_id": "zzz"}}`)
	hd, err := health.ParseCheckDefinition(d.Checks[0].Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.Validate(); err != nil || hd.ID != "h" || hd.ServiceID != "web" || hd.Name != "Service 'web' check" {
		t.Errorf("health sees %+v, %v", hd, err)
	}
}

// A registration made with the Consul Go client parses as Consul would
// take it.
func TestConsulClientRegistration(t *testing.T) {
	reg := &consul.AgentServiceRegistration{
		ID: "web-1", Name: "web", Tags: []string{"v1"}, Port: 8080, Address: "10.0.0.2",
		Meta:              map[string]string{"team": "a"},
		TaggedAddresses:   map[string]consul.ServiceAddress{"lan": {Address: "10.0.0.2", Port: 8080}},
		EnableTagOverride: true,
		Weights:           &consul.AgentWeights{Passing: 5, Warning: 1},
		Check:             &consul.AgentServiceCheck{HTTP: "http://10.0.0.2:8080/health", Interval: "10s", Timeout: "1s"},
		Checks:            consul.AgentServiceChecks{{TTL: "30s", CheckID: "ttl"}},
		Connect: &consul.AgentServiceConnect{SidecarService: &consul.AgentServiceRegistration{
			Proxy: &consul.AgentServiceConnectProxyConfig{Upstreams: []consul.Upstream{{DestinationName: "db", LocalBindPort: 9191}}},
		}},
	}
	body, err := json.Marshal(reg)
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, string(body))
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.ID != "web-1" || d.Port != 8080 || d.Weights != (Weights{5, 1}) || !d.EnableTagOverride ||
		len(d.Checks) != 2 || d.Checks[0].ID != "service:web-1:1" || d.Checks[1].ID != "ttl" || d.SidecarService == nil {
		t.Fatalf("got %+v", d)
	}
	sc, err := d.SidecarDefinition(21000)
	if err != nil {
		t.Fatal(err)
	}
	if sc.ID != "web-1-sidecar-proxy" || sc.Name != "web-sidecar-proxy" || sc.Port != 21000 || sc.Kind != KindConnectProxy {
		t.Errorf("sidecar %+v", sc)
	}
	// The sidecar's own checks survive as the health package needs them.
	if _, err := health.ParseCheckDefinition(sc.Checks[0].Raw); err != nil {
		t.Errorf("sidecar check: %v", err)
	}
}

func TestSidecarDefinition(t *testing.T) {
	d := mustParse(t, `{"name": "web", "port": 8080, "tags": ["v1"], "meta": {"a": "b"},
		"connect": {"native": false, "sidecar_service": {"proxy": {"upstreams": [{"destination_name": "db", "local_bind_port": 9191}]}}}}`)
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if string(d.Connect) != `{"native":false}` {
		t.Errorf("Connect %s", d.Connect)
	}
	if _, err := d.SidecarDefinition(0); err == nil || err.Error() != `catalog: service "web": Connect.SidecarService.Port: missing, and no port was allocated` {
		t.Errorf("no port: got %v", err)
	}
	sc, err := d.SidecarDefinition(21000)
	if err != nil {
		t.Fatal(err)
	}
	if sc.ID != "web-sidecar-proxy" || sc.Name != "web-sidecar-proxy" || sc.Kind != "connect-proxy" || sc.Port != 21000 ||
		!reflect.DeepEqual(sc.Tags, []string{"v1"}) || sc.Meta["a"] != "b" || sc.Weights != DefaultWeights {
		t.Errorf("sidecar %+v", sc)
	}
	proxy := rawMap(t, sc.Proxy)
	if proxy["DestinationServiceName"] != "web" || proxy["DestinationServiceID"] != "web" ||
		proxy["LocalServiceAddress"] != "127.0.0.1" || proxy["LocalServicePort"] != 8080.0 || proxy["upstreams"] == nil {
		t.Errorf("proxy %s", sc.Proxy)
	}
	if len(sc.Checks) != 1 || sc.Checks[0].ID != "service:web-sidecar-proxy" || sc.Checks[0].Name != "Connect Sidecar Listening" {
		t.Fatalf("checks %+v", sc.Checks)
	}
	if m := rawMap(t, sc.Checks[0].Raw); m["TCP"] != "127.0.0.1:21000" || m["Interval"] != "10s" {
		t.Errorf("check raw %s", sc.Checks[0].Raw)
	}

	// Given values win, except the ID, which is always derived.
	d = mustParse(t, `{"Name": "web", "ID": "web-2", "Port": 1, "Connect": {"SidecarService": {
		"ID": "mine", "Name": "px", "Port": 22000, "Tags": ["p"],
		"Proxy": {"local_service_port": 9999},
		"Checks": [{"TTL": "10s"}]}}}`)
	sc, err = d.SidecarDefinition(21000)
	if err != nil {
		t.Fatal(err)
	}
	proxy = rawMap(t, sc.Proxy)
	if sc.ID != "web-2-sidecar-proxy" || sc.Name != "px" || sc.Port != 22000 || sc.Tags[0] != "p" ||
		proxy["LocalServicePort"] != 9999.0 || proxy["DestinationServiceID"] != "web-2" || len(proxy) != 4 {
		t.Errorf("sidecar %+v proxy %s", sc, sc.Proxy)
	}
	if len(sc.Checks) != 1 || sc.Checks[0].ID != "service:web-2-sidecar-proxy" || sc.Checks[0].ServiceID != "web-2-sidecar-proxy" {
		t.Errorf("checks %+v", sc.Checks)
	}
	if sc, err := mustParse(t, `{"Name": "web"}`).SidecarDefinition(1); sc != nil || err != nil {
		t.Errorf("no sidecar: got %v, %v", sc, err)
	}
}

func TestDefinitionRoundTrip(t *testing.T) {
	d := mustParse(t, `{"name": "web", "port": 80, "tags": ["a"], "meta": {"k": "v"},
		"tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}}, "proxy": {"x": {"y": 1}},
		"connect": {"native": true, "sidecar_service": {"port": 3, "checks": [{"ttl": "1s"}]}},
		"checks": [{"ttl": "10s"}, {"tcp": "localhost:1", "interval": "1s"}]}`)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	d2 := mustParse(t, string(b))
	if !reflect.DeepEqual(d, d2) {
		t.Errorf("round trip through %s:\ngot  %+v\nwant %+v", b, d2, d)
	}
}
