package config

import "strings"

// flagKeys maps each flag that sets a key to that key. Besides marking
// which keys the flags set, it lets a file that uses a flag's name
// (`bind = ...`) get the right key suggested.
var flagKeys = map[string]string{
	"ingress":          "ingress_name",
	"node":             "node_name",
	"datacenter":       "datacenter",
	"data-dir":         "data_dir",
	"bind":             "bind_addr",
	"advertise":        "advertise_addr",
	"client":           "client_addr",
	"http-port":        "ports.http",
	"dns-port":         "ports.dns",
	"serf-port":        "ports.serf_lan",
	"server-port":      "ports.server",
	"server":           "server",
	"bootstrap-expect": "bootstrap_expect",
	"retry-join":       "retry_join",
	"retry-interval":   "retry_interval",
	"retry-max":        "retry_max",
	"encrypt":          "encrypt",
	"log-level":        "log_level",
	"log-json":         "log_json",
	"node-meta":        "node_meta",

	"enable-script-checks": "enable_script_checks",
}

// suggest returns the known key nearest to the unknown key, or "" if none
// is near enough to be a likely typo. prefix ("" or "ports.") is the
// section both live in; candidates are given without it.
func suggest(prefix, key string, candidates []string) string {
	squash := func(s string) string {
		s = strings.ToLower(s)
		return strings.NewReplacer("_", "", "-", "").Replace(s)
	}
	// Same key in another spelling: NodeName, node-name, NODE_NAME.
	for _, c := range candidates {
		if squash(c) == squash(key) {
			return prefix + c
		}
	}
	// A flag's name used as a key: bind, http-port.
	if prefix == "" {
		if k, ok := flagKeys[strings.ReplaceAll(strings.ToLower(key), "_", "-")]; ok {
			return k
		}
	}
	// A typo: allow about one edit in three, and at least one. A key far
	// longer than any known one is no typo, and skipping it keeps
	// pathological input cheap.
	if len(key) > 64 {
		return ""
	}
	best, bestDist := "", max(2, len(key)/3+1)
	for _, c := range candidates {
		if d := levenshtein(key, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return prefix + best
}

// levenshtein is the edit distance between a and b, in bytes (keys are
// ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
