package template

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	texttemplate "text/template"
)

// renderState is one render's view of the data: the functions record
// every dependency they touch and those whose data is not there yet.
type renderState struct {
	// lookup returns a dependency's data and whether it has arrived.
	lookup  func(dep) (depData, bool)
	env     func(string) string
	used    map[dep]bool
	missing []dep
}

func (s *renderState) get(d dep) (depData, bool) {
	s.used[d] = true
	data, ok := s.lookup(d)
	if !ok {
		s.addMissing(d)
	}
	return data, ok
}

func (s *renderState) addMissing(d dep) {
	for _, m := range s.missing {
		if m == d {
			return
		}
	}
	s.missing = append(s.missing, d)
}

// funcMap is the template functions, reading *cur (the render in
// progress). Parsing uses the same map so that an unknown function is a
// parse error.
func funcMap(cur **renderState) texttemplate.FuncMap {
	st := func() *renderState { return *cur }
	return texttemplate.FuncMap{
		// key is a key's value; the template waits until the key exists.
		"key": func(k string) (string, error) {
			k, err := cleanKey("key", k)
			if err != nil {
				return "", err
			}
			d := dep{kind: depKey, name: k}
			data, ok := st().get(d)
			if !ok {
				return "", nil
			}
			if !data.found {
				st().addMissing(d)
				return "", nil
			}
			return data.value.(string), nil
		},
		// keyOrDefault is a key's value, or def when the key does not
		// exist.
		"keyOrDefault": func(k, def string) (string, error) {
			k, err := cleanKey("keyOrDefault", k)
			if err != nil {
				return "", err
			}
			data, ok := st().get(dep{kind: depKey, name: k})
			if !ok {
				return "", nil
			}
			if !data.found {
				return def, nil
			}
			return data.value.(string), nil
		},
		"keyExists": func(k string) (bool, error) {
			k, err := cleanKey("keyExists", k)
			if err != nil {
				return false, err
			}
			data, ok := st().get(dep{kind: depKey, name: k})
			return ok && data.found, nil
		},
		// ls lists the keys directly under prefix (not deeper).
		"ls": func(prefix string) ([]*KeyPair, error) {
			return listKeys(st(), "ls", prefix, false)
		},
		// tree lists every key under prefix.
		"tree": func(prefix string) ([]*KeyPair, error) {
			return listKeys(st(), "tree", prefix, true)
		},
		// service lists a service's instances: "web", "v1.web",
		// "web@dc1", "web|any", "web|passing,warning", or the filter as a
		// second argument. The default filter is passing.
		"service": func(spec string, filters ...string) ([]*HealthService, error) {
			q, err := parseServiceSpec(spec, filters)
			if err != nil {
				return nil, err
			}
			data, ok := st().get(q.dep)
			if !ok {
				return []*HealthService{}, nil
			}
			all := data.value.([]*HealthService)
			if q.statuses == nil {
				return all, nil
			}
			out := make([]*HealthService, 0, len(all))
			for _, s := range all {
				if q.statuses[s.Status] {
					out = append(out, s)
				}
			}
			return out, nil
		},
		// services lists the catalog's services with their tags.
		"services": func(dc ...string) ([]*CatalogSnippet, error) {
			d, err := dcDep(depServices, "services", dc)
			if err != nil {
				return nil, err
			}
			data, ok := st().get(d)
			if !ok {
				return []*CatalogSnippet{}, nil
			}
			return data.value.([]*CatalogSnippet), nil
		},
		// nodes lists the catalog's nodes.
		"nodes": func(dc ...string) ([]*Node, error) {
			d, err := dcDep(depNodes, "nodes", dc)
			if err != nil {
				return nil, err
			}
			data, ok := st().get(d)
			if !ok {
				return []*Node{}, nil
			}
			return data.value.([]*Node), nil
		},
		// node is one node and its services; without a name, the agent's
		// own node. Nil when the node is not in the catalog.
		"node": func(args ...string) (*CatalogNode, error) {
			if len(args) > 1 {
				return nil, fmt.Errorf("node: want at most one argument (\"name\" or \"name@dc\"), got %d", len(args))
			}
			d := dep{kind: depNode}
			if len(args) == 1 {
				d.name, d.dc, _ = strings.Cut(args[0], "@")
				if d.name == "" {
					return nil, fmt.Errorf("node: empty node name in %q", args[0])
				}
			} else {
				self, ok := st().get(dep{kind: depSelf})
				if !ok {
					return nil, nil
				}
				d.name = self.value.(string)
			}
			if strings.ContainsAny(d.name, "/\x00") {
				return nil, fmt.Errorf("node: bad node name %q", d.name)
			}
			data, ok := st().get(d)
			if !ok {
				return nil, nil
			}
			return data.value.(*CatalogNode), nil
		},
		"env": func(name string) string { return st().env(name) },

		"toJSON":       toJSON,
		"toJSONPretty": toJSONPretty,
		"parseJSON":    parseJSON,
		"byTag":        byTag,
		"join":         join,
		"split":        split,
		"contains":     contains,
		"replaceAll":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"toLower":      strings.ToLower,
		"toUpper":      strings.ToUpper,
		"trimSpace":    strings.TrimSpace,
	}
}

func cleanKey(fn, k string) (string, error) {
	k = strings.TrimPrefix(k, "/")
	if k == "" {
		return "", fmt.Errorf("%s: empty key", fn)
	}
	if strings.ContainsRune(k, 0) {
		return "", fmt.Errorf("%s: key %q holds a NUL byte", fn, k)
	}
	return k, nil
}

func listKeys(s *renderState, fn, prefix string, deep bool) ([]*KeyPair, error) {
	if strings.ContainsRune(prefix, 0) {
		return nil, fmt.Errorf("%s: prefix %q holds a NUL byte", fn, prefix)
	}
	p := strings.Trim(prefix, "/")
	data, ok := s.get(dep{kind: depTree, name: p})
	if !ok {
		return []*KeyPair{}, nil
	}
	full := treePrefix(p)
	out := []*KeyPair{}
	for _, kv := range data.value.([]apiKV) {
		rel := strings.TrimPrefix(kv.Key, full)
		if rel == "" || strings.HasSuffix(rel, "/") || (!deep && strings.Contains(rel, "/")) {
			continue
		}
		out = append(out, &KeyPair{Path: kv.Key, Key: rel, Value: string(kv.Value),
			CreateIndex: kv.CreateIndex, ModifyIndex: kv.ModifyIndex, LockIndex: kv.LockIndex,
			Flags: kv.Flags, Session: kv.Session})
	}
	return out, nil
}

func dcDep(kind depKind, fn string, dc []string) (dep, error) {
	d := dep{kind: kind}
	switch len(dc) {
	case 0:
	case 1:
		d.dc = strings.TrimPrefix(dc[0], "@")
	default:
		return d, fmt.Errorf("%s: want at most one argument (\"@dc\"), got %d", fn, len(dc))
	}
	return d, nil
}

// serviceQuery is a parsed service argument.
type serviceQuery struct {
	dep dep
	// statuses keeps instances whose aggregated status is in the set;
	// nil keeps all (the server already filtered for passing).
	statuses map[string]bool
}

var (
	serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9_\-]+$`)
	serviceTagRE  = regexp.MustCompile(`^[A-Za-z0-9_=:.\-]+$`)
	validStatuses = []string{"any", "passing", "warning", "critical", "maintenance"}
)

// parseServiceSpec reads "[tag.]name[@dc][|filter]" and an optional
// filter argument, as consul-template's service function does.
func parseServiceSpec(spec string, filters []string) (serviceQuery, error) {
	var q serviceQuery
	s, filter, hasFilter := strings.Cut(spec, "|")
	switch {
	case len(filters) > 1:
		return q, fmt.Errorf("service %q: want at most one filter argument, got %d", spec, len(filters))
	case len(filters) == 1 && hasFilter:
		return q, fmt.Errorf("service %q: give the filter after | or as an argument, not both", spec)
	case len(filters) == 1:
		filter, hasFilter = filters[0], true
	}
	s, dc, _ := strings.Cut(s, "@")
	name := s
	tag := ""
	if i := strings.LastIndex(s, "."); i >= 0 {
		tag, name = s[:i], s[i+1:]
		if tag == "" {
			return q, fmt.Errorf("service %q: empty tag before the '.'", spec)
		}
		if !serviceTagRE.MatchString(tag) {
			return q, fmt.Errorf("service %q: bad tag %q", spec, tag)
		}
	}
	if name == "" {
		return q, fmt.Errorf("service %q: empty service name; want \"[tag.]name[@dc][|filter]\"", spec)
	}
	if !serviceNameRE.MatchString(name) {
		return q, fmt.Errorf("service %q: bad service name %q (letters, digits, - and _)", spec, name)
	}
	if strings.ContainsAny(dc, "/?#&\x00 ") {
		return q, fmt.Errorf("service %q: bad datacenter %q", spec, dc)
	}
	q.dep = dep{kind: depService, name: name, tag: tag, dc: dc}
	if !hasFilter {
		q.dep.passing = true
		return q, nil
	}
	set := map[string]bool{}
	for _, f := range strings.Split(filter, ",") {
		f = strings.TrimSpace(f)
		ok := false
		for _, v := range validStatuses {
			if f == v {
				ok = true
			}
		}
		if !ok {
			return q, fmt.Errorf("service %q: filter %q is not one of %s", spec, f, strings.Join(validStatuses, ", "))
		}
		set[f] = true
	}
	switch {
	case set["any"]:
		if len(set) > 1 {
			return q, fmt.Errorf("service %q: filter any cannot be combined with others", spec)
		}
	case len(set) == 1 && set["passing"]:
		q.dep.passing = true
	default:
		q.statuses = set
	}
	return q, nil
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toJSON: %w", err)
	}
	return string(b), nil
}

func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("toJSONPretty: %w", err)
	}
	return string(b), nil
}

func parseJSON(s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseJSON: %w", err)
	}
	return v, nil
}

// byTag groups instances or catalog entries by tag.
func byTag(v any) (any, error) {
	switch l := v.(type) {
	case []*HealthService:
		m := map[string][]*HealthService{}
		for _, s := range l {
			for _, t := range dedupe(s.Tags) {
				m[t] = append(m[t], s)
			}
		}
		return m, nil
	case []*CatalogSnippet:
		m := map[string][]*CatalogSnippet{}
		for _, s := range l {
			for _, t := range dedupe(s.Tags) {
				m[t] = append(m[t], s)
			}
		}
		return m, nil
	case []*CatalogNodeService:
		m := map[string][]*CatalogNodeService{}
		for _, s := range l {
			for _, t := range dedupe(s.Tags) {
				m[t] = append(m[t], s)
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("byTag: want the result of service, services or node's .Services, got %T", v)
}

func dedupe(tags []string) []string {
	seen := map[string]bool{}
	out := tags[:0:0]
	for _, t := range tags {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// toStrings accepts the list shapes templates hold.
func toStrings(fn string, v any) ([]string, error) {
	switch l := v.(type) {
	case []string:
		return l, nil
	case ServiceTags:
		return l, nil
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			out = append(out, fmt.Sprint(e))
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("%s: want a list of strings, got %T", fn, v)
}

// join is {{ $list | join "," }}.
func join(sep string, v any) (string, error) {
	l, err := toStrings("join", v)
	if err != nil {
		return "", err
	}
	return strings.Join(l, sep), nil
}

// split is {{ key "hosts" | split "," }}; an empty string gives no
// elements.
func split(sep, s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, sep)
}

// contains is {{ if .Tags | contains "v1" }}: a list element or, for a
// string, a substring.
func contains(needle, haystack any) (bool, error) {
	if s, ok := haystack.(string); ok {
		n, ok := needle.(string)
		if !ok {
			return false, fmt.Errorf("contains: a string holds strings, not %T", needle)
		}
		return strings.Contains(s, n), nil
	}
	l, err := toStrings("contains", haystack)
	if err != nil {
		return false, err
	}
	n := fmt.Sprint(needle)
	for _, e := range l {
		if e == n {
			return true, nil
		}
	}
	return false, nil
}

func defaultEnv(name string) string { return os.Getenv(name) }
