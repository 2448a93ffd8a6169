package config

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// field is one Config setting a file, the environment or a flag can set.
// The table drives decoding, merging and did-you-mean suggestions, so a
// key is added in one place.
type field struct {
	// key is the Consul key, dotted for nested ones ("ports.http").
	key string
	// ptr returns a pointer to the setting in c: *string, *int, *bool,
	// *time.Duration, *[]string or *map[string]string.
	ptr func(c *Config) any
}

var fields = []field{
	{"node_name", func(c *Config) any { return &c.NodeName }},
	{"datacenter", func(c *Config) any { return &c.Datacenter }},
	{"data_dir", func(c *Config) any { return &c.DataDir }},
	{"bind_addr", func(c *Config) any { return &c.BindAddr }},
	{"advertise_addr", func(c *Config) any { return &c.AdvertiseAddr }},
	{"client_addr", func(c *Config) any { return &c.ClientAddr }},
	{"ports.http", func(c *Config) any { return &c.Ports.HTTP }},
	{"ports.dns", func(c *Config) any { return &c.Ports.DNS }},
	{"ports.serf_lan", func(c *Config) any { return &c.Ports.SerfLAN }},
	{"ports.server", func(c *Config) any { return &c.Ports.Server }},
	{"server", func(c *Config) any { return &c.Server }},
	{"bootstrap_expect", func(c *Config) any { return &c.BootstrapExpect }},
	{"retry_join", func(c *Config) any { return &c.RetryJoin }},
	{"retry_interval", func(c *Config) any { return &c.RetryInterval }},
	{"retry_max", func(c *Config) any { return &c.RetryMax }},
	{"reconnect_timeout", func(c *Config) any { return &c.ReconnectTimeout }},
	{"encrypt", func(c *Config) any { return &c.Encrypt }},
	{"leave_on_terminate", func(c *Config) any { return &c.LeaveOnTerminate }},
	{"skip_leave_on_interrupt", func(c *Config) any { return &c.SkipLeaveOnInterrupt }},
	{"log_level", func(c *Config) any { return &c.LogLevel }},
	{"log_json", func(c *Config) any { return &c.LogJSON }},
	{"node_meta", func(c *Config) any { return &c.NodeMeta }},
	{"enable_script_checks", func(c *Config) any { return &c.EnableScriptChecks }},
	{"ingress_name", func(c *Config) any { return &c.IngressName }},
	{"autopilot.cleanup_dead_servers", func(c *Config) any { return &c.Autopilot.CleanupDeadServers }},
	{"autopilot.dead_server_last_contact_threshold", func(c *Config) any { return &c.Autopilot.DeadServerLastContactThreshold }},
	{"proxy.drain_timeout", func(c *Config) any { return &c.Proxy.DrainTimeout }},
}

// blocks are the nested objects of a file (`ports { http = 8500 }`).
var blocks = []string{"autopilot", "ports", "proxy"}

// extraKeys are the sections kept raw in Config.Extra for later work. The
// value says whether the section is a list, appended across files.
var extraKeys = map[string]bool{
	"service":    true,
	"services":   true,
	"check":      true,
	"checks":     true,
	"watches":    true,
	"templates":  true,
	"ingress":    false,
	"recursors":  true,
	"dns_config": false,
	"domain":     false,
	"alt_domain": false,
}

var fieldIndex = func() map[string]field {
	m := make(map[string]field, len(fields))
	for _, f := range fields {
		m[f.key] = f
	}
	return m
}()

// topLevelKeys are the keys valid at the top of a file, for suggestions.
var topLevelKeys = func() []string {
	keys := slices.Clone(blocks)
	for _, f := range fields {
		if !strings.Contains(f.key, ".") {
			keys = append(keys, f.key)
		}
	}
	keys = append(keys, slices.Sorted(maps.Keys(extraKeys))...)
	return keys
}()

// blockKeys returns the keys valid inside block { }, without the prefix.
func blockKeys(block string) []string {
	var keys []string
	for _, f := range fields {
		if k, ok := strings.CutPrefix(f.key, block+"."); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// layer is what one source sets: values in cfg for the keys in set, plus
// raw sections. Merging copies only those keys.
type layer struct {
	cfg   Config
	set   map[string]bool
	extra map[string]any
}

func newLayer() *layer {
	return &layer{set: map[string]bool{}, extra: map[string]any{}}
}

// decode sets key (a fields key) from v; name is what errors call it.
func (l *layer) decode(key, name string, v any) error {
	f := fieldIndex[key]
	if err := setValue(f.ptr(&l.cfg), name, v); err != nil {
		return err
	}
	l.set[key] = true
	return nil
}

// setExtra keeps a raw section, normalised as Config.Extra documents.
func (l *layer) setExtra(key string, v any) {
	isList := extraKeys[key]
	switch {
	case isList:
		if _, ok := v.([]any); !ok {
			v = []any{v}
		}
	case key == "dns_config" || key == "ingress":
		if o, ok := asObject(v); ok {
			v = o
		}
	}
	l.extra[key] = v
}

// applyTo merges l onto dst. With appendLists, retry_join and the Extra
// lists append to what dst has (files); otherwise they replace it
// (environment, flags). node_meta always merges by key.
func (l *layer) applyTo(dst *Config, appendLists bool) {
	for _, f := range fields {
		if !l.set[f.key] {
			continue
		}
		switch d := f.ptr(dst).(type) {
		case *string:
			*d = *f.ptr(&l.cfg).(*string)
		case *int:
			*d = *f.ptr(&l.cfg).(*int)
		case *bool:
			*d = *f.ptr(&l.cfg).(*bool)
		case *[]string:
			src := *f.ptr(&l.cfg).(*[]string)
			if appendLists {
				*d = append(slices.Clip(*d), src...)
			} else {
				*d = slices.Clone(src)
			}
		case *map[string]string:
			m := make(map[string]string, len(*d))
			maps.Copy(m, *d)
			maps.Copy(m, *f.ptr(&l.cfg).(*map[string]string))
			*d = m
		case *time.Duration:
			*d = *f.ptr(&l.cfg).(*time.Duration)
		}
	}
	if len(l.extra) == 0 {
		return
	}
	extra := make(map[string]any, len(dst.Extra)+len(l.extra))
	maps.Copy(extra, dst.Extra)
	for k, v := range l.extra {
		if old, ok := extra[k].([]any); ok && extraKeys[k] && appendLists {
			extra[k] = append(slices.Clip(old), v.([]any)...)
		} else {
			extra[k] = v
		}
	}
	dst.Extra = extra
}

// keys returns the keys l sets, fields and Extra sections, sorted.
func (l *layer) keys() []string {
	keys := slices.Collect(maps.Keys(l.set))
	keys = append(keys, slices.Collect(maps.Keys(l.extra))...)
	slices.Sort(keys)
	return keys
}
