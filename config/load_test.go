package config

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPrecedence sets each key in every source in turn and checks the
// later source wins: defaults < first file < second file < environment <
// flags. The first file is HCL and the second JSON.
func TestPrecedence(t *testing.T) {
	type row struct {
		name  string
		hcl   string            // first file
		json  string            // second file
		env   map[string]string // nil: the key has no variable
		flags []string          // nil: the key has no flag
		get   func(Config) any
		want  [5]any // defaults, +file1, +file2, +env, +flags
	}
	rows := []row{
		{"node_name", `node_name = "f1"`, `{"node_name": "f2"}`,
			map[string]string{"OUTRIGGER_NODE": "e"}, []string{"-node", "fl"},
			func(c Config) any { return c.NodeName }, [5]any{"host-1", "f1", "f2", "e", "fl"}},
		{"datacenter", `datacenter = "f1"`, `{"datacenter": "f2"}`,
			map[string]string{"OUTRIGGER_DATACENTER": "e"}, []string{"--datacenter=fl"},
			func(c Config) any { return c.Datacenter }, [5]any{"dc1", "f1", "f2", "e", "fl"}},
		{"data_dir", `data_dir = "/f1"`, `{"data_dir": "/f2"}`,
			map[string]string{"OUTRIGGER_DATA_DIR": "/e"}, []string{"-data-dir", "/fl"},
			func(c Config) any { return c.DataDir }, [5]any{"", "/f1", "/f2", "/e", "/fl"}},
		{"bind_addr", `bind_addr = "10.0.0.1"`, `{"bind_addr": "10.0.0.2"}`,
			map[string]string{"OUTRIGGER_BIND": "10.0.0.3"}, []string{"-bind", "10.0.0.4"},
			func(c Config) any { return c.BindAddr }, [5]any{"0.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"advertise_addr", `advertise_addr = "10.0.0.1"`, `{"advertise_addr": "10.0.0.2"}`,
			map[string]string{"OUTRIGGER_ADVERTISE": "10.0.0.3"}, []string{"-advertise", "10.0.0.4"},
			func(c Config) any { return c.AdvertiseAddr }, [5]any{"", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"client_addr", `client_addr = "10.0.0.1"`, `{"client_addr": "10.0.0.2"}`,
			map[string]string{"OUTRIGGER_CLIENT": "10.0.0.3"}, []string{"-client", "10.0.0.4"},
			func(c Config) any { return c.ClientAddr }, [5]any{"127.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"ports.http", `ports { http = 1 }`, `{"ports": {"http": 2}}`,
			map[string]string{"OUTRIGGER_HTTP_PORT": "3"}, []string{"-http-port", "4"},
			func(c Config) any { return c.Ports.HTTP }, [5]any{8500, 1, 2, 3, 4}},
		{"ports.dns", `ports { dns = 1 }`, `{"ports": {"dns": 2}}`,
			map[string]string{"OUTRIGGER_DNS_PORT": "3"}, []string{"-dns-port", "4"},
			func(c Config) any { return c.Ports.DNS }, [5]any{8600, 1, 2, 3, 4}},
		{"ports.serf_lan", `ports { serf_lan = 1 }`, `{"ports": {"serf_lan": 2}}`,
			map[string]string{"OUTRIGGER_SERF_PORT": "3"}, []string{"-serf-port", "4"},
			func(c Config) any { return c.Ports.SerfLAN }, [5]any{8301, 1, 2, 3, 4}},
		{"ports.server", `ports { server = 1 }`, `{"ports": {"server": 2}}`,
			map[string]string{"OUTRIGGER_SERVER_PORT": "3"}, []string{"-server-port", "4"},
			func(c Config) any { return c.Ports.Server }, [5]any{8300, 1, 2, 3, 4}},
		{"server", `server = true`, `{"server": false}`,
			map[string]string{"OUTRIGGER_SERVER": "true"}, []string{"-server=false"},
			func(c Config) any { return c.Server }, [5]any{false, true, false, true, false}},
		{"bootstrap_expect", `bootstrap_expect = 1`, `{"bootstrap_expect": 2}`,
			map[string]string{"OUTRIGGER_BOOTSTRAP_EXPECT": "3"}, []string{"-bootstrap-expect", "4"},
			func(c Config) any { return c.BootstrapExpect }, [5]any{0, 1, 2, 3, 4}},
		{"retry_join", `retry_join = ["f1"]`, `{"retry_join": ["f2", "f3"]}`,
			map[string]string{"OUTRIGGER_RETRY_JOIN": "e1, e2,"}, []string{"-retry-join", "fl1", "--retry-join", "fl2"},
			func(c Config) any { return c.RetryJoin },
			[5]any{[]string(nil), []string{"f1"}, []string{"f1", "f2", "f3"}, []string{"e1", "e2"}, []string{"fl1", "fl2"}}},
		{"retry_interval", `retry_interval = "1s"`, `{"retry_interval": "2m"}`,
			nil, []string{"-retry-interval", "4h"},
			func(c Config) any { return c.RetryInterval }, [5]any{5 * time.Second, time.Second, 2 * time.Minute, 2 * time.Minute, 4 * time.Hour}},
		{"retry_max", `retry_max = 1`, `{"retry_max": 2}`,
			nil, []string{"-retry-max", "4"},
			func(c Config) any { return c.RetryMax }, [5]any{0, 1, 2, 2, 4}},
		{"reconnect_timeout", `reconnect_timeout = "8h"`, `{"reconnect_timeout": "24h"}`,
			nil, nil,
			func(c Config) any { return c.ReconnectTimeout }, [5]any{72 * time.Hour, 8 * time.Hour, 24 * time.Hour, 24 * time.Hour, 24 * time.Hour}},
		{"encrypt", `encrypt = "f1"`, `{"encrypt": "f2"}`,
			map[string]string{"OUTRIGGER_ENCRYPT": "e"}, []string{"-encrypt", "fl"},
			func(c Config) any { return c.Encrypt }, [5]any{"", "f1", "f2", "e", "fl"}},
		{"leave_on_terminate", `leave_on_terminate = false`, `{"leave_on_terminate": true}`,
			nil, nil,
			func(c Config) any { return c.LeaveOnTerminate }, [5]any{true, false, true, true, true}},
		{"autopilot.cleanup_dead_servers", "autopilot {\n cleanup_dead_servers = false\n}", `{"autopilot": {"cleanup_dead_servers": true}}`,
			nil, nil,
			func(c Config) any { return c.Autopilot.CleanupDeadServers }, [5]any{true, false, true, true, true}},
		{"autopilot.dead_server_last_contact_threshold", "autopilot {\n dead_server_last_contact_threshold = \"1h\"\n}", `{"autopilot": {"dead_server_last_contact_threshold": "2h"}}`,
			nil, nil,
			func(c Config) any { return c.Autopilot.DeadServerLastContactThreshold }, [5]any{24 * time.Hour, time.Hour, 2 * time.Hour, 2 * time.Hour, 2 * time.Hour}},
		{"skip_leave_on_interrupt", `skip_leave_on_interrupt = true`, `{"skip_leave_on_interrupt": false}`,
			nil, nil,
			func(c Config) any { return c.SkipLeaveOnInterrupt }, [5]any{false, true, false, false, false}},
		{"log_level", `log_level = "trace"`, `{"log_level": "WARNING"}`,
			map[string]string{"OUTRIGGER_LOG_LEVEL": "Err"}, []string{"-log-level", "debug"},
			func(c Config) any { return c.LogLevel }, [5]any{"info", "trace", "warn", "error", "debug"}},
		{"log_json", `log_json = true`, `{"log_json": false}`,
			map[string]string{"OUTRIGGER_LOG_JSON": "1"}, []string{"-log-json=false"},
			func(c Config) any { return c.LogJSON }, [5]any{false, true, false, true, false}},
		{"node_meta", `node_meta { a = "f1" }`, `{"node_meta": {"b": "f2", "c": "f2"}}`,
			nil, []string{"-node-meta", "c:fl", "-node-meta", "d:x:y"},
			func(c Config) any { return c.NodeMeta },
			[5]any{map[string]string(nil), map[string]string{"a": "f1"}, map[string]string{"a": "f1", "b": "f2", "c": "f2"},
				map[string]string{"a": "f1", "b": "f2", "c": "f2"}, map[string]string{"a": "f1", "b": "f2", "c": "fl", "d": "x:y"}}},
		{"enable_script_checks", `enable_script_checks = true`, `{"enable_script_checks": false}`,
			nil, []string{"-enable-script-checks"},
			func(c Config) any { return c.EnableScriptChecks }, [5]any{false, true, false, false, true}},
		{"proxy.drain_timeout", "proxy {\n drain_timeout = \"5s\"\n}", `{"proxy": {"drain_timeout": "1m"}}`,
			nil, nil,
			func(c Config) any { return c.Proxy.DrainTimeout }, [5]any{30 * time.Second, 5 * time.Second, time.Minute, time.Minute, time.Minute}},
		{"ingress_name", `ingress_name = "f1"`, `{"ingress_name": "f2"}`,
			map[string]string{"OUTRIGGER_INGRESS": "e"}, []string{"-ingress", "fl"},
			func(c Config) any { return c.IngressName }, [5]any{"", "f1", "f2", "e", "fl"}},
	}
	if len(rows) != len(fields) {
		t.Errorf("%d rows for %d fields: a field is untested", len(rows), len(fields))
	}
	stages := []string{"defaults", "file", "second file", "env", "flags"}
	for _, r := range rows {
		for stage, want := range r.want {
			t.Run(r.name+"/"+stages[stage], func(t *testing.T) {
				s := sources{files: map[string]string{"1.hcl": r.hcl, "2.json": r.json}}
				if stage >= 1 {
					s.args = append(s.args, "-config-file", "$DIR/1.hcl")
				}
				if stage >= 2 {
					s.args = append(s.args, "-config-file", "$DIR/2.json")
				}
				if stage >= 3 {
					s.env = r.env
				}
				if stage >= 4 {
					s.args = append(s.args, r.flags...)
				}
				c, err := load(t, s)
				if err != nil {
					t.Fatal(err)
				}
				if got := r.get(c); !reflect.DeepEqual(got, want) {
					t.Errorf("got %#v, want %#v", got, want)
				}
			})
		}
	}
}

// TestFlagDefaultsDoNotOverride checks that a flag left unset does not
// override a file, even where the flag's own default differs.
func TestFlagDefaultsDoNotOverride(t *testing.T) {
	c, err := load(t, sources{
		files: map[string]string{"a.json": `{"ports": {"http": 9000}, "bind_addr": "10.0.0.1", "log_level": "debug", "retry_interval": "7s"}`},
		args:  []string{"-config-file", "$DIR/a.json", "-server"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ports.HTTP != 9000 || c.BindAddr != "10.0.0.1" || c.LogLevel != "debug" || c.RetryInterval != 7*time.Second || !c.Server {
		t.Errorf("got %+v", c)
	}
}

func TestEmptyEnvIsUnset(t *testing.T) {
	env := map[string]string{}
	for _, ev := range EnvVars() {
		env[ev.Name] = ""
	}
	env["OUTRIGGER_RETRY_JOIN"] = " , "
	c, err := load(t, sources{
		files: map[string]string{"a.hcl": `node_name = "n" retry_join = ["x"]`},
		env:   env,
		args:  []string{"-config-file", "$DIR/a.hcl"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "n" || !slices.Equal(c.RetryJoin, []string{"x"}) {
		t.Errorf("got NodeName %q RetryJoin %q, want the file's", c.NodeName, c.RetryJoin)
	}
}

func TestEnvVarsCoverTheirKeys(t *testing.T) {
	seen := map[string]bool{}
	for _, ev := range EnvVars() {
		if _, ok := fieldIndex[ev.Key]; !ok {
			t.Errorf("%s sets unknown key %q", ev.Name, ev.Key)
		}
		if seen[ev.Name] {
			t.Errorf("%s listed twice", ev.Name)
		}
		seen[ev.Name] = true
	}
	if len(seen) != 17 {
		t.Errorf("%d variables, want 17", len(seen))
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := load(t, sources{env: map[string]string{
		"OUTRIGGER_HTTP_PORT":        "abc",
		"OUTRIGGER_SERVER":           "yes",
		"OUTRIGGER_BOOTSTRAP_EXPECT": "3.5",
	}})
	want := `config: environment: OUTRIGGER_HTTP_PORT: "abc" is not an integer
config: environment: OUTRIGGER_SERVER: "yes" is not a boolean
config: environment: OUTRIGGER_BOOTSTRAP_EXPECT: "3.5" is not an integer`
	if got := errText(err); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if !errors.Is(err, ErrWrongType) {
		t.Error("errors.Is(err, ErrWrongType) = false")
	}
}

func TestJSONAndHCLAgree(t *testing.T) {
	fromJSON, err := ParseFile("testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	fromHCL, err := ParseFile("testdata/full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if j, h := fromJSON.Keys(), fromHCL.Keys(); !slices.Equal(j, h) {
		t.Errorf("keys differ:\njson %q\nhcl  %q", j, h)
	}
	cj, ch := DefaultConfig(), DefaultConfig()
	fromJSON.ApplyTo(&cj)
	fromHCL.ApplyTo(&ch)
	if !reflect.DeepEqual(cj, ch) {
		t.Errorf("configs differ:\njson %#v\nhcl  %#v", cj, ch)
	}
	if n := len(fromJSON.Keys()); n != len(fields)+len(extraKeys) {
		t.Errorf("full.json sets %d keys, want every one of %d", n, len(fields)+len(extraKeys))
	}
}

// TestFullFile checks every value in testdata/full.hcl lands where it should.
func TestFullFile(t *testing.T) {
	c, err := load(t, sources{args: []string{"-config-file", "testdata/full.hcl"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		NodeName:             "web-1",
		Datacenter:           "eu_west-1",
		DataDir:              "/var/lib/outrigger",
		BindAddr:             "10.0.0.5",
		AdvertiseAddr:        "192.0.2.10",
		ClientAddr:           "0.0.0.0",
		Ports:                Ports{HTTP: 18500, DNS: 18600, SerfLAN: 18301, Server: 18300},
		Server:               true,
		BootstrapExpect:      3,
		RetryJoin:            []string{"10.0.0.6", "consul.internal:8301", "[2001:db8::1]:8301"},
		RetryInterval:        30 * time.Second,
		RetryMax:             10,
		ReconnectTimeout:     24 * time.Hour,
		Encrypt:              "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
		LeaveOnTerminate:     false,
		SkipLeaveOnInterrupt: true,
		LogLevel:             "debug",
		LogJSON:              true,
		Autopilot:            Autopilot{CleanupDeadServers: false, DeadServerLastContactThreshold: 36 * time.Hour},
		NodeMeta:             map[string]string{"rack": "r1", "version": "2"},
		EnableScriptChecks:   true,
		IngressName:          "edge",
		Proxy:                Proxy{DrainTimeout: 10 * time.Second},
		Extra: map[string]any{
			"templates":  []any{map[string]any{"source": "in.ctmpl", "destination": "out.conf"}},
			"ingress":    map[string]any{"listeners": []any{map[string]any{"port": 8080, "protocol": "tcp", "service": "db"}}},
			"service":    []any{map[string]any{"name": "web", "port": 8080, "tags": []any{"a", "b"}}},
			"services":   []any{map[string]any{"name": "db", "port": 5432, "checks": []any{map[string]any{"tcp": "localhost:5432", "interval": "10s"}}}},
			"check":      []any{map[string]any{"id": "mem", "ttl": "30s"}},
			"checks":     []any{map[string]any{"id": "disk", "ttl": "1m"}},
			"watches":    []any{map[string]any{"type": "key", "key": "foo"}},
			"recursors":  []any{"1.1.1.1", "8.8.8.8"},
			"domain":     "consul.",
			"alt_domain": "outrigger.",
			"dns_config": map[string]any{"allow_stale": true, "max_stale": "87600h"},
		},
		ConfigFiles: []string{"testdata/full.hcl"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %#v\nwant %#v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("full.hcl does not validate: %v", err)
	}
}

func TestExtraMerge(t *testing.T) {
	c, err := load(t, sources{
		files: map[string]string{
			"a.json": `{"service": {"name": "a"}, "recursors": "1.1.1.1", "domain": "a.", "dns_config": {"x": 1}}`,
			"b.hcl":  `service { name = "b" } recursors = ["8.8.8.8"] domain = "b." dns_config { y = 2 }`,
		},
		args: []string{"-config-file", "$DIR/a.json", "-config-file", "$DIR/b.hcl"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"service":    []any{map[string]any{"name": "a"}, map[string]any{"name": "b"}},
		"recursors":  []any{"1.1.1.1", "8.8.8.8"},
		"domain":     "b.",
		"dns_config": map[string]any{"y": 2},
	}
	if !reflect.DeepEqual(c.Extra, want) {
		t.Errorf("got  %#v\nwant %#v", c.Extra, want)
	}
}

func TestConfigDirOrder(t *testing.T) {
	files := map[string]string{
		"d/10-b.json":   `{"node_name": "b", "retry_join": ["b"]}`,
		"d/02-a.hcl":    `node_name = "a" retry_join = ["a"]`,
		"d/1-c.JSON":    `{"node_name": "c", "retry_join": ["c"]}`,
		"d/notes.txt":   `not a config file`,
		"d/sub/x.json":  `{"node_name": "sub"}`,
		"d/dir.hcl/x":   `a directory named like a file`,
		"first.hcl":     `node_name = "first" retry_join = ["first"]`,
		"last.json":     `{"retry_join": ["last"]}`,
		"other/z.hcl":   `retry_join = ["z"]`,
		"other/y.json~": `backup`,
	}
	c, err := load(t, sources{files: files, args: []string{
		"-config-file", "$DIR/first.hcl",
		"-config-dir", "$DIR/d",
		"--config-file=$DIR/last.json",
		"-config-file", "$DIR/other", // a directory given as a file: read as one
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "a", "c", "b", "last", "z"}; !slices.Equal(c.RetryJoin, want) {
		t.Errorf("RetryJoin = %q, want %q", c.RetryJoin, want)
	}
	if c.NodeName != "b" {
		t.Errorf("NodeName = %q, want b (the last file setting it)", c.NodeName)
	}
	wantFiles := []string{"$DIR/first.hcl", "$DIR/d/02-a.hcl", "$DIR/d/1-c.JSON", "$DIR/d/10-b.json", "$DIR/last.json", "$DIR/other/z.hcl"}
	if !slices.Equal(c.ConfigFiles, wantFiles) {
		t.Errorf("ConfigFiles = %q, want %q", c.ConfigFiles, wantFiles)
	}
}

func TestSourceErrors(t *testing.T) {
	_, err := load(t, sources{
		files: map[string]string{
			"a.json":    `{"node_nam": "x"}`,
			"b.hcl":     `ports { http = "abc" }`,
			"c.yaml":    `node_name: x`,
			"dir/x.hcl": `server = true`,
		},
		env: map[string]string{"OUTRIGGER_DNS_PORT": "x"},
		args: []string{
			"-config-file", "$DIR/a.json",
			"-config-file", "$DIR/b.hcl",
			"-config-file", "$DIR/c.yaml",
			"-config-file", "$DIR/missing.json",
			"-config-dir", "$DIR/a.json",
			"-config-dir", "$DIR/dir",
		},
	})
	want := strings.Join([]string{
		`config: $DIR/a.json: unknown key "node_nam" (did you mean "node_name"?)`,
		`config: $DIR/b.hcl: ports.http: "abc" is not an integer`,
		`config: $DIR/c.yaml: cannot tell the format from the extension (want .json or .hcl)`,
		`config: $DIR/missing.json: no such file or directory`,
		`config: $DIR/a.json: -config-dir names a file, not a directory`,
		`config: environment: OUTRIGGER_DNS_PORT: "x" is not an integer`,
	}, "\n")
	if got := errText(err); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDev(t *testing.T) {
	c, err := load(t, sources{args: []string{"-dev"}})
	if err != nil {
		t.Fatal(err)
	}
	want := DevConfig()
	want.NodeName = "host-1"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if !c.Dev || !c.Server || c.BootstrapExpect != 1 || c.BindAddr != "127.0.0.1" || c.ClientAddr != "127.0.0.1" || c.RetryInterval != time.Second {
		t.Errorf("dev defaults wrong: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("dev config does not validate: %v", err)
	}

	// Everything still overrides dev's defaults.
	c, err = load(t, sources{
		files: map[string]string{"a.hcl": `retry_interval = "3s"`},
		env:   map[string]string{"OUTRIGGER_BIND": "10.0.0.1"},
		args:  []string{"--dev", "-client", "0.0.0.0", "-config-file", "$DIR/a.hcl"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientAddr != "0.0.0.0" || c.BindAddr != "10.0.0.1" || c.RetryInterval != 3*time.Second || !c.Dev {
		t.Errorf("got %+v", c)
	}
}

func TestHostnameDefault(t *testing.T) {
	for _, tc := range []struct {
		host    string
		err     error
		want    string
		wantErr string
	}{
		{host: "plain", want: "plain"},
		{host: "web-1.prod.example.com", want: "web-1"},
		{host: "", wantErr: "config: node_name: not set, and no hostname to default to: empty hostname"},
		{err: errors.New("boom"), wantErr: "config: node_name: not set, and no hostname to default to: boom"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			fs := newTestFlagSet()
			f := NewFlags(fs)
			f.Hostname = func() (string, error) { return tc.host, tc.err }
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			c, err := Load(f, mapEnv(nil))
			if got := errText(err); got != tc.wantErr {
				t.Fatalf("error %q, want %q", got, tc.wantErr)
			}
			if c.NodeName != tc.want {
				t.Errorf("NodeName = %q, want %q", c.NodeName, tc.want)
			}
		})
	}
}

func TestLoadWithoutFlags(t *testing.T) {
	c, err := Load(nil, mapEnv(map[string]string{"OUTRIGGER_NODE": "n", "OUTRIGGER_HTTP_PORT": "1234"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "n" || c.Ports.HTTP != 1234 {
		t.Errorf("got %+v", c)
	}
}

func TestLoadBeforeParse(t *testing.T) {
	f := NewFlags(newTestFlagSet())
	if _, err := Load(f, mapEnv(nil)); err == nil {
		t.Error("Load before Parse succeeded")
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-node-meta", "novalue"},
		{"-node-meta", ":v"},
		{"-http-port", "abc"},
		{"-retry-interval", "30"},
		{"-config-file", ""},
	} {
		fs := newTestFlagSet()
		NewFlags(fs)
		if err := fs.Parse(args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestFlagUsage(t *testing.T) {
	fs := newTestFlagSet()
	NewFlags(fs)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	for name := range flagKeys {
		if fs.Lookup(name) == nil {
			t.Errorf("flag -%s not registered", name)
		}
	}
	for _, name := range []string{"dev", "config-file", "config-dir"} {
		if !strings.Contains(b.String(), "-"+name) {
			t.Errorf("usage lacks -%s", name)
		}
	}
}

func TestUsesOSByDefault(t *testing.T) {
	t.Setenv("OUTRIGGER_NODE", "from-os")
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "from-os" {
		t.Errorf("NodeName = %q, want from-os", c.NodeName)
	}
}

func TestServerLeaveDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		s                     sources
		leaveTerm, skipOnIntr bool
	}{
		{"client", sources{}, true, false},
		{"server", sources{args: []string{"-server"}}, false, true},
		{"dev server", sources{args: []string{"-dev"}}, true, false},
		{"server from env", sources{env: map[string]string{"OUTRIGGER_SERVER": "true"}}, false, true},
		{"server told to leave", sources{files: map[string]string{"a.json": `{"leave_on_terminate": true, "skip_leave_on_interrupt": false}`},
			args: []string{"-server", "-config-file", "$DIR/a.json"}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if c.LeaveOnTerminate != tc.leaveTerm || c.SkipLeaveOnInterrupt != tc.skipOnIntr {
				t.Errorf("leave_on_terminate %v skip_leave_on_interrupt %v, want %v %v",
					c.LeaveOnTerminate, c.SkipLeaveOnInterrupt, tc.leaveTerm, tc.skipOnIntr)
			}
		})
	}
}
