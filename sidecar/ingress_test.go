package sidecar

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	tu "github.com/outrigger/outrigger/internal/testutil"
)

func (env *testEnv) ingress(js string) {
	env.t.Helper()
	cfg, err := ParseIngressConfig([]byte(js))
	if err != nil {
		env.t.Fatal(err)
	}
	if err := env.m.ApplyIngress(context.Background(), cfg); err != nil {
		env.t.Fatal(err)
	}
}

func TestIngressRouting(t *testing.T) {
	env := newEnv(t)
	api := newHTTPBackend(t, "api")
	apiStaging := newHTTPBackend(t, "api-staging")
	web := newHTTPBackend(t, "web")
	webCanary := newHTTPBackend(t, "web-canary")
	admin := newHTTPBackend(t, "admin")
	env.src.set("api",
		entry("api", "api1", "n1", api.addr(), withMeta("env", "prod")),
		entry("api", "api2", "n2", apiStaging.addr(), withMeta("env", "staging")))
	env.src.set("web",
		entry("web", "web1", "n1", web.addr()),
		entry("web", "web2", "n2", webCanary.addr(), withTags("canary")))
	env.src.set("admin", entry("admin", "admin1", "n1", admin.addr()))
	port := tu.FreePort(t)
	env.ingress(fmt.Sprintf(`{"listeners": [{"port": %d, "bind_address": "127.0.0.1", "routes": [
		{"host": "api.example.com", "headers": {"X-Env": "staging"}, "service": "api", "meta": {"env": "staging"}},
		{"host": "api.example.com", "service": "api", "meta": {"env": "prod"}},
		{"hosts": ["*.admin.example.com"], "service": "admin"},
		{"path_prefix": "/canary", "service": "web", "tag": "canary"},
		{"path_prefix": "/missing", "service": "nothing-here"},
		{"host": "only.example.com", "service": "web"},
		{"path_prefix": "/", "headers": {"X-Any": "*"}, "service": "admin"},
		{"path_prefix": "/web", "service": "web", "tag": "nope"}
	]}]}`, port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := httpClient()
	for _, tc := range []struct {
		name, path string
		hdr        []string
		code       int
		body       string
	}{
		{"host+header+meta", "/", []string{"Host", "api.example.com", "X-Env", "staging"}, 200, "api-staging"},
		{"host+meta", "/", []string{"Host", "API.example.com:8080"}, 200, "api"},
		{"wrong header value", "/", []string{"Host", "api.example.com", "X-Env", "prod"}, 200, "api"},
		{"wildcard host", "/", []string{"Host", "x.admin.example.com"}, 200, "admin"},
		{"wildcard needs a subdomain", "/zzz", []string{"Host", "admin.example.com"}, 404, ""},
		{"path prefix+tag", "/canary/x", nil, 200, "web-canary"},
		{"unknown service", "/missing", nil, 503, "no healthy instance of nothing-here"},
		{"header present", "/q", []string{"X-Any", "whatever"}, 200, "admin"},
		{"tag with no instance", "/web", nil, 503, "no healthy instance of web[tag=nope]"},
		{"no route", "/else", nil, 404, "no route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := get(t, c, base+tc.path, tc.hdr...)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("got %d %q, want %d %q", code, body, tc.code, tc.body)
			}
		})
	}
	if n := counter(t, env.m.metrics.noInstance.WithLabelValues(fmt.Sprintf("ingress-%d", port), fmt.Sprintf("ingress-%d/4", port), "nothing-here")); n != 1 {
		t.Errorf("no_instance_total for the unknown service = %v, want 1", n)
	}
}

func TestIngressWeights(t *testing.T) {
	env := newEnv(t)
	stable, canary := newHTTPBackend(t, "stable"), newHTTPBackend(t, "canary")
	env.src.set("web",
		entry("web", "web1", "n1", stable.addr()),
		entry("web", "web2", "n2", canary.addr(), withTags("canary")))
	port := tu.FreePort(t)
	env.ingress(fmt.Sprintf(`{"listeners": [{"port": %d, "bind_address": "127.0.0.1", "routes": [
		{"splits": [{"service": "web", "weight": 80}, {"service": "web", "tag": "canary", "weight": 20}]}]}]}`, port))
	const total = 10000
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := httpClient()
			local := map[string]int{}
			for i := 0; i < total/8; i++ {
				_, body, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
				local[body]++
			}
			mu.Lock()
			for k, v := range local {
				got[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The stable split (weight 80) may also land on the canary
	// instance: "web" without a tag includes it. So: 80% to web (half
	// of it to each instance) + 20% to the canary alone.
	wantCanary := 0.2 + 0.8/2
	share := float64(got["canary"]) / total
	if math.Abs(share-wantCanary) > 0.05 {
		t.Errorf("canary got %.3f of requests, want %.2f±0.05 (%v)", share, wantCanary, got)
	}
	if got["stable"]+got["canary"] != total {
		t.Errorf("answers: %v", got)
	}
}

func TestIngressWeightsExact(t *testing.T) {
	env := newEnv(t)
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	env.src.set("a", entry("a", "a1", "n1", a.addr()))
	env.src.set("b", entry("b", "b1", "n1", b.addr()))
	port := tu.FreePort(t)
	env.ingress(fmt.Sprintf(`{"listeners": [{"port": %d, "bind_address": "127.0.0.1", "routes": [
		{"splits": [{"service": "a", "weight": 90}, {"service": "b", "weight": 10}]}]}]}`, port))
	c := httpClient()
	got := map[string]int{}
	const total = 10000
	for i := 0; i < total; i++ {
		_, body, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
		got[body]++
	}
	if share := float64(got["b"]) / total; math.Abs(share-0.10) > 0.05*0.10+0.01 {
		t.Errorf("b got %.3f, want 0.10 (%v)", share, got)
	}
	if share := float64(got["a"]) / total; math.Abs(share-0.90) > 0.05 {
		t.Errorf("a got %.3f, want 0.90 (%v)", share, got)
	}
}

func TestIngressRouteChangeLive(t *testing.T) {
	env := newEnv(t)
	a, b := newHTTPBackend(t, "a"), newHTTPBackend(t, "b")
	env.src.set("a", entry("a", "a1", "n1", a.addr()))
	env.src.set("b", entry("b", "b1", "n1", b.addr()))
	port := tu.FreePort(t)
	conf := `{"listeners": [{"port": %d, "bind_address": "127.0.0.1", "routes": [{"path_prefix": "/", "service": "%s"}]},
		{"port": %d, "bind_address": "127.0.0.1", "protocol": "tcp", "service": "%s"}]}`
	tcpPort := tu.FreePort(t)
	ta, tb := newTCPBackend(t, "ta"), newTCPBackend(t, "tb")
	env.src.set("ta", entry("ta", "ta1", "n1", ta.addr()))
	env.src.set("tb", entry("tb", "tb1", "n1", tb.addr()))
	env.ingress(fmt.Sprintf(conf, port, "a", tcpPort, "ta"))
	c := httpClient() // keeps its connection to the ingress across the change
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if _, body, _ := get(t, c, url); body != "a" {
		t.Fatalf("got %q", body)
	}
	_, held := dialName(t, fmt.Sprintf("127.0.0.1:%d", tcpPort))
	defer held.Close()
	accepted := counter(t, env.m.metrics.connTotal.WithLabelValues(fmt.Sprintf("ingress-%d", port)))
	env.ingress(fmt.Sprintf(conf, port, "b", tcpPort, "tb"))
	if _, body, _ := get(t, c, url); body != "b" {
		t.Fatalf("after the change: got %q, want b", body)
	}
	if n := counter(t, env.m.metrics.connTotal.WithLabelValues(fmt.Sprintf("ingress-%d", port))); n != accepted {
		t.Errorf("the client reconnected (%v → %v connections): the change should not drop keep-alive connections", accepted, n)
	}
	if n := name(t, fmt.Sprintf("127.0.0.1:%d", tcpPort)); n != "tb" {
		t.Errorf("tcp listener after the change: %q", n)
	}
	echo(t, held, "established tcp connection survives")
	// Removing the ingress closes its listeners.
	if err := env.m.ApplyIngress(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.m.Addrs()[fmt.Sprintf("ingress-%d", port)]; ok {
		t.Error("listener still there after ApplyIngress(nil)")
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	env := newEnv(t)
	p1, p2 := tu.FreePort(t), tu.FreePort(t)
	ok := Spec{Proxies: []ProxySpec{{ID: "web-sidecar-proxy", Upstreams: []Upstream{{DestinationName: "api", LocalBindPort: p1}}}}}
	if err := env.m.Apply(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	// The second listener's port is taken by someone else: nothing changes.
	busy := newTCPBackend(t, "busy")
	var busyPort int
	fmt.Sscanf(busy.addr()[strings.LastIndex(busy.addr(), ":")+1:], "%d", &busyPort)
	bad := Spec{Proxies: []ProxySpec{{ID: "web-sidecar-proxy", Upstreams: []Upstream{
		{DestinationName: "db", LocalBindPort: p2}, {DestinationName: "cache", LocalBindPort: busyPort}}}}}
	err := env.m.Apply(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "web-sidecar-proxy/cache") || !strings.Contains(err.Error(), fmt.Sprint(busyPort)) {
		t.Fatalf("err = %v, want one naming the listener and port", err)
	}
	addrs := env.m.Addrs()
	if len(addrs) != 1 || addrs["web-sidecar-proxy/api"] == "" {
		t.Errorf("after a failed Apply: %v, want only the first listener", addrs)
	}
	// An ingress clashing with a sidecar listener is refused.
	err = env.m.ApplyIngress(context.Background(), &IngressConfig{Listeners: []IngressListener{{Port: p1, Protocol: "tcp", Target: IngressTarget{Service: "x"}}}})
	if err == nil || !strings.Contains(err.Error(), "clashes") {
		t.Errorf("clash: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unknown listener field", `{"listeners":[{"port":80,"routes":[{"service":"a"}],"colour":"red"}]}`, `listeners[0].colour: unknown field`},
		{"unknown top field", `{"listener":[]}`, `listener: unknown field`},
		{"route without service", `{"listeners":[{"port":80,"routes":[{"path_prefix":"/a"}]}]}`, `listeners[0].routes[0]: a route needs a service or splits`},
		{"port clash", `{"listeners":[{"port":80,"routes":[{"service":"a"}]},{"port":80,"bind_address":"127.0.0.1","protocol":"tcp","service":"b"}]}`, `listeners[1].port: 80 clashes with listeners[0]`},
		{"bad port", `{"listeners":[{"port":0,"routes":[{"service":"a"}]}]}`, `listeners[0].port: 0 is out of range`},
		{"tcp without service", `{"listeners":[{"port":81,"protocol":"tcp"}]}`, `listeners[0].service: a tcp listener needs a service`},
		{"bad protocol", `{"listeners":[{"port":81,"protocol":"udp","service":"a"}]}`, `listeners[0].protocol: "udp" is neither http nor tcp`},
		{"bad weight", `{"listeners":[{"port":81,"routes":[{"splits":[{"service":"a","weight":0}]}]}]}`, `splits[0].weight: 0 is out of range`},
		{"split without weight", `{"listeners":[{"port":81,"routes":[{"splits":[{"service":"a"}]}]}]}`, `splits[0].weight: required`},
		{"bad path", `{"listeners":[{"port":81,"routes":[{"path_prefix":"a","service":"a"}]}]}`, `path_prefix: "a" does not start with /`},
		{"bad balancer", `{"listeners":[{"port":81,"balancer":"fastest","routes":[{"service":"a"}]}]}`, `balancer: "fastest" is not one of`},
		{"port as text", `{"listeners":[{"port":"eighty","routes":[{"service":"a"}]}]}`, `listeners[0].port: "eighty" is not a number`},
		{"not an object", `[1]`, `is not an object`},
		{"bad json", `{"listeners":[`, `invalid JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseIngressConfig([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestProxyConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unknown field", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"colour":1}]}`, `upstreams[0].colour: unknown field`},
		{"no destination", `{"upstreams":[{"local_bind_port":9191}]}`, `upstreams[0].destination_name: required`},
		{"no port", `{"upstreams":[{"destination_name":"a"}]}`, `upstreams[0].local_bind_port: required`},
		{"port range", `{"upstreams":[{"destination_name":"a","local_bind_port":70000}]}`, `local_bind_port: 70000 is out of range 1-65535`},
		{"protocol", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"protocol":"udp"}}]}`, `upstreams[0].config.protocol: "udp" is neither tcp nor http`},
		{"limits", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"limits":{"max_connections":-1}}}]}`, `limits.max_connections: -1 is negative`},
		{"ejection", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"passive_health_check":{"max_ejection_percent":101}}}]}`, `max_ejection_percent: 101 is out of range 0-100`},
		{"duration", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"passive_health_check":{"interval":"soon"}}}]}`, `interval: "soon" is not a duration`},
		{"header hash on tcp", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"config":{"balancer":"hash","hash_on":"header:X-User"}}]}`, `hash_on: "header:X-User": hashing on a header needs protocol http`},
		{"socket", `{"local_service_socket_path":"/x.sock"}`, `local_service_socket_path: "/x.sock": Unix socket services are not supported`},
		{"transparent", `{"mode":"transparent"}`, `mode: "transparent": only direct mode is supported`},
		{"datacenter", `{"upstreams":[{"destination_name":"a","local_bind_port":1,"datacenter":"dc2"}]}`, `upstreams[0].datacenter: "dc2" is not supported`},
		{"bad address", `{"local_service_address":"localhost"}`, `local_service_address: "localhost" is not an IP address`},
		{"dup key", `{"upstreams":[],"Upstreams":[]}`, `given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProxyConfig([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseProxyConfig(t *testing.T) {
	spec, err := ParseProxyConfig([]byte(`{
		"DestinationServiceName": "web", "DestinationServiceID": "web1",
		"LocalServiceAddress": "127.0.0.1", "LocalServicePort": 8080,
		"Config": {"protocol": "http", "envoy_prometheus_bind_addr": "0.0.0.0:9102"},
		"MeshGateway": {},
		"Upstreams": [
			{"DestinationName": "api", "LocalBindPort": 9191},
			{"destination_name": "db", "local_bind_address": "127.0.0.2", "local_bind_port": 5432,
			 "config": {"protocol": "tcp", "connect_timeout_ms": 250, "balancer": "least_request",
			   "limits": {"max_connections": 10, "max_pending_requests": 5, "max_concurrent_requests": 7},
			   "passive_health_check": {"interval": "5s", "max_failures": 3, "enforcing_consecutive_5xx": 50,
			     "max_ejection_percent": 20, "base_ejection_time": 60000000000}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Inbound == nil || spec.Inbound.LocalServicePort != 8080 || spec.Inbound.Protocol != "http" || spec.DestinationServiceID != "web1" {
		t.Errorf("inbound: %+v %+v", spec, spec.Inbound)
	}
	if len(spec.Upstreams) != 2 {
		t.Fatalf("upstreams: %+v", spec.Upstreams)
	}
	u0, u1 := spec.Upstreams[0], spec.Upstreams[1]
	if u0.DestinationName != "api" || u0.LocalBindPort != 9191 || u0.LocalBindAddress != "127.0.0.1" || u0.Protocol != "tcp" || u0.Balancer != "round_robin" {
		t.Errorf("api: %+v", u0)
	}
	if u1.LocalBindAddress != "127.0.0.2" || u1.ConnectTimeout.Milliseconds() != 250 || u1.Balancer != "least_conn" ||
		u1.Limits != (Limits{10, 5, 7}) || u1.Outlier.Interval.Seconds() != 5 || u1.Outlier.MaxFailures != 3 ||
		u1.Outlier.EnforcingConsecutive5xx != 50 || u1.Outlier.MaxEjectionPercent != 20 || u1.Outlier.BaseEjectionTime.Seconds() != 60 {
		t.Errorf("db: %+v", u1)
	}
}

func TestParseUpstreamFlag(t *testing.T) {
	for _, tc := range []struct {
		in, addr, proto string
		port            int
		err             string
	}{
		{in: "api:9191", addr: "127.0.0.1", port: 9191, proto: "tcp"},
		{in: "api:10.0.0.1:9191", addr: "10.0.0.1", port: 9191, proto: "tcp"},
		{in: "api:9191:http", addr: "127.0.0.1", port: 9191, proto: "http"},
		{in: "api:127.0.0.2:9191:http", addr: "127.0.0.2", port: 9191, proto: "http"},
		{in: "api:[::1]:9191:http", addr: "::1", port: 9191, proto: "http"},
		{in: "api", err: "want name:port"},
		{in: ":9191", err: "want name:port"},
		{in: "api:99999", err: `port "99999" is not a number in 1-65535`},
		{in: "api:9191:udp", err: `protocol "udp" is neither tcp nor http`},
		{in: "api:host:9191", err: `"host" is not an IP address`},
		{in: "api:1:2:3:4", err: "want name:port"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseUpstreamFlag(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
					t.Errorf("err = %v, want %q naming the value", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.DestinationName != "api" || u.LocalBindAddress != tc.addr || u.LocalBindPort != tc.port || u.Protocol != tc.proto {
				t.Errorf("got %+v", u)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{DrainTimeout: -1, RetryBudgetPercent: 200}
	err := c.Validate()
	for _, want := range []string{"Source: required", "DrainTimeout: -1ns is negative", "RetryBudgetPercent: 200 is out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	spec := Spec{Proxies: []ProxySpec{{ID: "a", Upstreams: []Upstream{{DestinationName: "x", LocalBindPort: 1, Balancer: "nope"}}}, {ID: "a"}}}
	err = spec.Validate()
	for _, want := range []string{`proxy "a": upstreams[0].balancer: "nope"`, `ID: "a" is given twice`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}
