package sidecar

import (
	"encoding/json"
	"testing"
)

func FuzzParseProxyConfig(f *testing.F) {
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"upstreams":[{"destination_name":"api","local_bind_port":9191}]}`,
		`{"LocalServicePort":8080,"Config":{"protocol":"http"},"Upstreams":[{"DestinationName":"a","LocalBindPort":"1","Config":{"limits":{"max_connections":"3"},"passive_health_check":{"interval":"1s","base_ejection_time":5}}}]}`,
		`{"upstreams":{"destination_name":"a","local_bind_port":1e3}}`,
		`{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"balancer":"hash","hash_on":"header:"}}]}`,
		`{"mode":"transparent","transparent_proxy":{"outbound_listener_port":1}}`, `{"a":1}{`, `{"local_service_port":1.5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseProxyConfig(json.RawMessage(data))
		if err != nil {
			return
		}
		// What parses validates.
		spec.ID = "x"
		if spec.Inbound != nil {
			spec.Inbound.BindPort = 21000
		}
		if err := (Spec{Proxies: []ProxySpec{spec}}).Validate(); err != nil {
			t.Fatalf("parsed %q but Validate says %v", data, err)
		}
	})
}

func FuzzParseUpstreamFlag(f *testing.F) {
	for _, s := range []string{"api:9191", "api:127.0.0.1:9191", "api:9191:http", "api:[::1]:1:tcp", "a:b:c:d", "[", ":", "api:[::1", "api:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUpstreamFlag(s)
		if err != nil {
			return
		}
		if u.DestinationName == "" || u.LocalBindPort < 1 || u.LocalBindPort > 65535 {
			t.Fatalf("%q → %+v", s, u)
		}
	})
}

func FuzzParseIngressConfig(f *testing.F) {
	for _, s := range []string{
		`{"listeners":[{"port":8080,"routes":[{"host":"a.example.com","path_prefix":"/x","headers":{"X":"1"},"service":"a","meta":{"env":"prod"}}]}]}`,
		`{"listeners":[{"port":8080,"routes":[{"splits":[{"service":"a","weight":1},{"service":"b","tag":"c","weight":"2"}]}]},{"port":9,"protocol":"tcp","service":"db"}]}`,
		`{"listeners":[{"port":80,"routes":[]}]}`, `{}`, `null`, `{"listeners":{}}`, `{"listeners":[{"port":1,"limits":{"max_connections":1}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseIngressConfig(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed %q but Validate says %v", data, err)
		}
		for _, l := range cfg.Listeners {
			spec := ingressListener(l)
			if len(spec.routes) == 0 {
				t.Fatalf("listener without routes from %q", data)
			}
			for _, r := range spec.routes {
				if len(r.targets) == 0 {
					t.Fatalf("route without targets from %q", data)
				}
			}
		}
	})
}
