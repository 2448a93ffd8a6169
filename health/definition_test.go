package health

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestValidate(t *testing.T) {
	http := func(f func(*CheckDefinition)) CheckDefinition {
		d := CheckDefinition{Name: "web", HTTP: "http://127.0.0.1:8080/health", Interval: 10 * time.Second}
		if f != nil {
			f(&d)
		}
		return d
	}
	tests := []struct {
		name string
		def  CheckDefinition
		want string // "" for valid; errors joined by "\n"
	}{
		{"http", http(nil), ""},
		{"tcp", CheckDefinition{Name: "db", TCP: "localhost:5432", Interval: time.Second}, ""},
		{"ttl", CheckDefinition{Name: "app", TTL: 30 * time.Second}, ""},
		{"grpc", CheckDefinition{Name: "rpc", GRPC: "127.0.0.1:9090/my.Service", Interval: time.Second}, ""},
		{"script", CheckDefinition{Name: "s", Args: []string{"/bin/true"}, Interval: time.Second}, ""},
		{"short interval is raised, not refused", http(func(d *CheckDefinition) { d.Interval = 100 * time.Millisecond }), ""},
		{"ipv6 tcp", CheckDefinition{Name: "v6", TCP: "[::1]:80", Interval: time.Second}, ""},
		{"named port", CheckDefinition{Name: "np", TCP: "db:postgres", Interval: time.Second}, ""},

		{"no name", http(func(d *CheckDefinition) { d.Name = "" }),
			`health: check: Name: missing`},
		{"no name but id", http(func(d *CheckDefinition) { d.Name, d.ID = "", "web-1" }),
			`health: check "web-1": Name: missing`},
		{"no type", CheckDefinition{Name: "x", Interval: time.Second},
			`health: check "x": no check type: set one of HTTP, TCP, TTL, GRPC or Args`},
		{"two types", http(func(d *CheckDefinition) { d.TCP = "127.0.0.1:1" }),
			`health: check "web": HTTP, TCP are all set: a check has exactly one of HTTP, TCP, TTL, GRPC or Args`},
		{"bad status", http(func(d *CheckDefinition) { d.Status = "ok" }),
			`health: check "web": Status: "ok" is not passing, warning or critical`},
		{"maintenance is not an initial status", http(func(d *CheckDefinition) { d.Status = StatusMaintenance }),
			`health: check "web": Status: "maintenance" is not passing, warning or critical`},
		{"http scheme", http(func(d *CheckDefinition) { d.HTTP = "ftp://x/y" }),
			`health: check "web": HTTP: "ftp://x/y" is not an http:// or https:// URL`},
		{"http no host", http(func(d *CheckDefinition) { d.HTTP = "http:///health" }),
			`health: check "web": HTTP: "http:///health" is not an http:// or https:// URL`},
		{"http unparsable", http(func(d *CheckDefinition) { d.HTTP = "http://[::1/x" }),
			`health: check "web": HTTP: "http://[::1/x" is not a URL: missing ']' in host`},
		{"method", http(func(d *CheckDefinition) { d.Method = "GE T" }),
			`health: check "web": Method: "GE T" is not an HTTP method`},
		{"header name", http(func(d *CheckDefinition) { d.Header = map[string][]string{"X Bad": {"1"}} }),
			`health: check "web": Header: "X Bad" is not a valid header name`},
		{"header value", http(func(d *CheckDefinition) { d.Header = map[string][]string{"X-A": {"a\r\nB: c"}} }),
			`health: check "web": Header: value of "X-A" contains a line break or NUL`},
		{"body on tcp", CheckDefinition{Name: "t", TCP: "h:1", Interval: time.Second, Body: "x", Method: "POST"},
			"health: check \"t\": Method: set on a tcp check; only HTTP checks send it\n" +
				`health: check "t": Body: set on a tcp check; only HTTP checks send it`},
		{"tcp no port", CheckDefinition{Name: "t", TCP: "localhost", Interval: time.Second},
			`health: check "t": TCP: "localhost" is not host:port: missing port in address`},
		{"tcp port range", CheckDefinition{Name: "t", TCP: "localhost:70000", Interval: time.Second},
			`health: check "t": TCP: "localhost:70000" is not host:port: port 70000 out of range 1-65535`},
		{"tcp empty host", CheckDefinition{Name: "t", TCP: ":80", Interval: time.Second},
			`health: check "t": TCP: ":80" is not host:port: empty host`},
		{"grpc", CheckDefinition{Name: "g", GRPC: "svc/health", Interval: time.Second},
			`health: check "g": GRPC: "svc/health" is not host:port or host:port/service: missing port in address`},
		{"args empty program", CheckDefinition{Name: "s", Args: []string{"", "x"}, Interval: time.Second},
			`health: check "s": Args: first element (the program) is empty`},
		{"interval missing", http(func(d *CheckDefinition) { d.Interval = 0 }),
			`health: check "web": Interval: missing (required for http checks)`},
		{"interval missing script", CheckDefinition{Name: "s", Args: []string{"x"}},
			`health: check "s": Interval: missing (required for script checks)`},
		{"interval negative", http(func(d *CheckDefinition) { d.Interval = -time.Second }),
			`health: check "web": Interval: -1s is negative`},
		{"interval with ttl", CheckDefinition{Name: "a", TTL: time.Minute, Interval: time.Second},
			`health: check "a": Interval: 1s set on a TTL check; the TTL is its deadline`},
		{"ttl negative", CheckDefinition{Name: "a", TTL: -time.Second},
			`health: check "a": TTL: -1s is negative`},
		{"timeout negative", http(func(d *CheckDefinition) { d.Timeout = -2 * time.Second }),
			`health: check "web": Timeout: -2s is negative`},
		{"counters negative", http(func(d *CheckDefinition) {
			d.SuccessBeforePassing, d.FailuresBeforeCritical, d.OutputMaxSize = -1, -2, -3
		}),
			"health: check \"web\": OutputMaxSize: -3 is negative\n" +
				"health: check \"web\": SuccessBeforePassing: -1 is negative\n" +
				`health: check "web": FailuresBeforeCritical: -2 is negative`},
		{"warning after critical", http(func(d *CheckDefinition) { d.FailuresBeforeWarning, d.FailuresBeforeCritical = 5, 3 }),
			`health: check "web": FailuresBeforeWarning: 5 is greater than FailuresBeforeCritical (3)`},
		{"deregister negative", http(func(d *CheckDefinition) { d.DeregisterCriticalServiceAfter = -time.Minute }),
			`health: check "web": DeregisterCriticalServiceAfter: -1m0s is negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.def.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidDefinition) {
				t.Errorf("errors.Is(err, ErrInvalidDefinition) = false")
			}
		})
	}
}

func TestType(t *testing.T) {
	for _, tt := range []struct {
		def  CheckDefinition
		want string
	}{
		{CheckDefinition{HTTP: "http://x"}, TypeHTTP},
		{CheckDefinition{TCP: "x:1"}, TypeTCP},
		{CheckDefinition{TTL: time.Second}, TypeTTL},
		{CheckDefinition{GRPC: "x:1"}, TypeGRPC},
		{CheckDefinition{Args: []string{"x"}}, TypeScript},
		{CheckDefinition{}, ""},
		{CheckDefinition{HTTP: "http://x", TTL: time.Second}, ""},
	} {
		if got := tt.def.Type(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.def, got, tt.want)
		}
	}
}

func TestParseShapes(t *testing.T) {
	want := CheckDefinition{
		ID:                             "api-health",
		Name:                           "API health",
		Notes:                          "see runbook",
		ServiceID:                      "api-1",
		Status:                         "passing",
		HTTP:                           "https://127.0.0.1:8443/health",
		Method:                         "POST",
		Header:                         map[string][]string{"X-Token": {"a", "b"}, "Host": {"api.internal"}},
		Body:                           `{"deep":true}`,
		TLSServerName:                  "api.internal",
		TLSSkipVerify:                  true,
		Interval:                       10 * time.Second,
		Timeout:                        2 * time.Second,
		SuccessBeforePassing:           2,
		FailuresBeforeWarning:          1,
		FailuresBeforeCritical:         3,
		DeregisterCriticalServiceAfter: 90 * time.Minute,
	}
	camel := `{
		"CheckID": "api-health", "Name": "API health", "Notes": "see runbook",
		"ServiceID": "api-1", "Status": "passing",
		"HTTP": "https://127.0.0.1:8443/health", "Method": "POST",
		"Header": {"X-Token": ["a", "b"], "Host": ["api.internal"]},
		"Body": "{\"deep\":true}", "TLSServerName": "api.internal", "TLSSkipVerify": true,
		"Interval": "10s", "Timeout": "2s",
		"SuccessBeforePassing": 2, "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3,
		"DeregisterCriticalServiceAfter": "1h30m"
	}`
	snake := `{
		"id": "api-health", "name": "API health", "notes": "see runbook",
		"service_id": "api-1", "status": "passing",
		"http": "https://127.0.0.1:8443/health", "method": "POST",
		"header": {"X-Token": ["a", "b"], "Host": "api.internal"},
		"body": "{\"deep\":true}", "tls_server_name": "api.internal", "tls_skip_verify": "true",
		"interval": "10s", "timeout": 2000000000,
		"success_before_passing": "2", "failures_before_warning": 1.0, "failures_before_critical": 3,
		"deregister_critical_service_after": "90m"
	}`
	for name, in := range map[string]string{"camel": camel, "snake": snake} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCheckDefinition([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}

	t.Run("script and grpc keys", func(t *testing.T) {
		for in, want := range map[string]CheckDefinition{
			`{"Name":"s","ScriptArgs":["/bin/check","-v"],"Interval":"5s"}`:                                             {Name: "s", Args: []string{"/bin/check", "-v"}, Interval: 5 * time.Second},
			`{"name":"s","script_args":["/bin/check"],"interval":"5s"}`:                                                 {Name: "s", Args: []string{"/bin/check"}, Interval: 5 * time.Second},
			`{"name":"s","args":"/bin/check","interval":"5s"}`:                                                          {Name: "s", Args: []string{"/bin/check"}, Interval: 5 * time.Second},
			`{"Name":"g","GRPC":"127.0.0.1:9/svc","GRPCUseTLS":true,"Interval":"1s"}`:                                   {Name: "g", GRPC: "127.0.0.1:9/svc", GRPCUseTLS: true, Interval: time.Second},
			`{"name":"g","grpc":"h:1","grpc_use_tls":false,"interval":"1s"}`:                                            {Name: "g", GRPC: "h:1", Interval: time.Second},
			`{"Name":"t","TCP":"h:1","TCPUseTLS":true,"Interval":"1s","UDP":"","Namespace":"default","Token":"secret"}`: {Name: "t", TCP: "h:1", TCPUseTLS: true, Interval: time.Second, Token: "secret"},
			`{"Name":"ttl","TTL":"30s","HTTP":null,"Header":{},"Args":[]}`:                                              {Name: "ttl", TTL: 30 * time.Second},
			`{"ID":"same","CheckID":"same","Name":"n","TTL":"1s"}`:                                                      {ID: "same", Name: "n", TTL: time.Second},
			`{"Name":"h","HTTP":"http://x","Interval":"1s","Header":[{"A":["1"]},{"B":"2","A":"3"}]}`: {
				Name: "h", HTTP: "http://x", Interval: time.Second, Header: map[string][]string{"A": {"1", "3"}, "B": {"2"}}},
		} {
			got, err := ParseCheckDefinition([]byte(in))
			if err != nil {
				t.Errorf("%s: %v", in, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s:\ngot  %+v\nwant %+v", in, got, want)
			}
		}
	})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in, want    string
		unsupported bool
	}{
		{`null`, `health: check: parse: want a JSON object, got null`, false},
		{`[1]`, `health: check: parse: want a JSON object, got [1]`, false},
		{``, `health: check: parse: want a JSON object, got `, false},
		{`{"Name":`, `health: check: parse: unexpected EOF`, false},
		{`{"Name":"a"} {}`, `health: check: parse: trailing data after the JSON object`, false},
		{`{"Name":"a","Intervall":"10s"}`, `health: check "a": Intervall: unknown key`, false},
		{`{"Name":"a","Interval":"10"}`, `health: check "a": Interval: "10" is not a duration such as "10s" or "1m30s"`, false},
		{`{"Name":"a","Interval":true}`, `health: check "a": Interval: true is not a duration such as "10s"`, false},
		{`{"Name":"a","TTL":1.5}`, `health: check "a": TTL: 1.5 is not a whole number of nanoseconds`, false},
		{`{"Name":5}`, `health: check: Name: 5 is not a string`, false},
		{`{"Name":"a","TLSSkipVerify":"yes please"}`, `health: check "a": TLSSkipVerify: "yes please" is not a boolean`, false},
		{`{"Name":"a","FailuresBeforeCritical":2.5}`, `health: check "a": FailuresBeforeCritical: 2.5 is not an integer (or out of range)`, false},
		{`{"Name":"a","FailuresBeforeCritical":1e20}`, `health: check "a": FailuresBeforeCritical: 1e20 is not an integer (or out of range)`, false},
		{`{"Name":"a","Args":["x",1]}`, `health: check "a": Args: element 1 of ["x",1] is not a string`, false},
		{`{"Name":"a","Header":{"X":[1]}}`, `health: check "a": Header: "X": element 0 of {"X":[1]} is not a string`, false},
		{`{"Name":"a","Header":"x"}`, `health: check "a": Header: "x" is not an object of header names to lists of values`, false},
		{`{"ID":"a","CheckID":"b","Name":"n"}`, `health: check "b": ID: conflicts with "CheckID": both set ID`, false},
		{`{"Name":"a","Args":["x"],"ScriptArgs":["y"]}`, `health: check "a": ScriptArgs: conflicts with "Args": both set Args`, false},
		{`{"Name":"a","UDP":"h:53","Interval":"1s"}`, `health: check "a": UDP: UDP checks are not supported`, true},
		{`{"Name":"a","AliasService":"web"}`, `health: check "a": AliasService: alias checks are not supported`, true},
		{`{"Name":"a","Script":"curl x"}`, `health: check "a": Script: shell Script checks (use Args) are not supported`, true},
		{`{"Name":"a","docker_container_id":"abc"}`, `health: check "a": docker_container_id: Docker checks are not supported`, true},
		{`{"Name":"a","Namespace":"team-a"}`, `health: check "a": Namespace: namespaces are not supported`, true},
		{`{"Name":"a","Foo":1,"Interval":"x"}`, "health: check \"a\": Foo: unknown key\n" +
			`health: check "a": Interval: "x" is not a duration such as "10s" or "1m30s"`, false},
	}
	for _, tt := range tests {
		_, err := ParseCheckDefinition([]byte(tt.in))
		if err == nil {
			t.Errorf("%s: got no error, want %q", tt.in, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.in, err, tt.want)
		}
		if !errors.Is(err, ErrInvalidDefinition) {
			t.Errorf("%s: errors.Is(err, ErrInvalidDefinition) = false", tt.in)
		}
		if got := errors.Is(err, ErrUnsupported); got != tt.unsupported {
			t.Errorf("%s: errors.Is(err, ErrUnsupported) = %v, want %v", tt.in, got, tt.unsupported)
		}
	}
}

// TestParseConsulClient: what the Consul Go client sends for
// /v1/agent/check/register parses as meant.
func TestParseConsulClient(t *testing.T) {
	reg := api.AgentCheckRegistration{
		ID:        "mem",
		Name:      "Memory utilization",
		Notes:     "over 90% is bad",
		ServiceID: "web",
		AgentServiceCheck: api.AgentServiceCheck{
			Args:                           []string{"/usr/local/bin/check_mem.py", "-limit", "256MB"},
			Interval:                       "10s",
			Timeout:                        "1s",
			Status:                         "warning",
			SuccessBeforePassing:           3,
			FailuresBeforeCritical:         2,
			DeregisterCriticalServiceAfter: "90m",
		},
	}
	data, err := json.Marshal(reg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCheckDefinition(data)
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	want := CheckDefinition{
		ID: "mem", Name: "Memory utilization", Notes: "over 90% is bad", ServiceID: "web",
		Args: []string{"/usr/local/bin/check_mem.py", "-limit", "256MB"}, Interval: 10 * time.Second,
		Timeout: time.Second, Status: "warning", SuccessBeforePassing: 3, FailuresBeforeCritical: 2,
		DeregisterCriticalServiceAfter: 90 * time.Minute,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// A service registration's check, as the client sends it.
	svc := api.AgentServiceCheck{HTTP: "http://localhost:5000/health", Interval: "15s", Header: map[string][]string{"A": {"b"}}, Method: "HEAD", TLSSkipVerify: true}
	data, _ = json.Marshal(svc)
	got, err = ParseCheckDefinition(data)
	if err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	got.FillServiceDefaults("web-1", "web", 0, 1)
	want = CheckDefinition{ID: "service:web-1", Name: "Service 'web' check", ServiceID: "web-1",
		HTTP: "http://localhost:5000/health", Interval: 15 * time.Second, Header: map[string][]string{"A": {"b"}},
		Method: "HEAD", TLSSkipVerify: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
}

func TestFillServiceDefaults(t *testing.T) {
	var d CheckDefinition
	d.FillServiceDefaults("redis-2", "redis", 1, 3)
	if d.ID != "service:redis-2:2" || d.Name != "Service 'redis' check" || d.ServiceID != "redis-2" {
		t.Errorf("got %+v", d)
	}
	d = CheckDefinition{ID: "mine", Name: "Mine", ServiceID: "other"}
	d.FillServiceDefaults("redis-2", "redis", 0, 1)
	if d.ID != "mine" || d.Name != "Mine" || d.ServiceID != "other" {
		t.Errorf("set fields changed: %+v", d)
	}
}

func TestCheckDefinitionFromMap(t *testing.T) {
	// As config.Config.Extra holds an HCL check block.
	m := map[string]any{
		"id":                       "x",
		"name":                     "X",
		"http":                     "http://localhost/",
		"interval":                 "5s",
		"header":                   []any{map[string]any{"Authorization": []any{"Bearer t"}}},
		"failures_before_critical": 2,
	}
	got, err := CheckDefinitionFromMap(m)
	if err != nil {
		t.Fatal(err)
	}
	want := CheckDefinition{ID: "x", Name: "X", HTTP: "http://localhost/", Interval: 5 * time.Second,
		Header: map[string][]string{"Authorization": {"Bearer t"}}, FailuresBeforeCritical: 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	d := CheckDefinition{
		ID: "a", Name: "A", GRPC: "h:1/s", GRPCUseTLS: true, TLSSkipVerify: true,
		Interval: 1500 * time.Millisecond, Timeout: time.Second, DeregisterCriticalServiceAfter: time.Hour,
		FailuresBeforeWarning: 1, FailuresBeforeCritical: 2, OutputMaxSize: 100,
	}
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"Interval":"1.5s"`) || !strings.Contains(string(data), `"DeregisterCriticalServiceAfter":"1h0m0s"`) {
		t.Errorf("durations not written as strings: %s", data)
	}
	var back CheckDefinition
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("got %+v\nwant %+v", back, d)
	}
}
