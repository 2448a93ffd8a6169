package catalog

import (
	"slices"
	"strings"
)

// Healthy returns the entries DNS answers with, as Consul's DNS does: no
// critical check and no maintenance (node or service), and with
// onlyPassing no warning either. Consul's ?passing is
// Healthy(entries, true). The result shares entries' backing array when
// nothing is filtered out; do not modify either.
func Healthy(entries []ServiceEntry, onlyPassing bool) []ServiceEntry {
	return filter(entries, func(e *ServiceEntry) bool {
		switch e.AggregatedStatus() {
		case StatusPassing:
			return true
		case StatusWarning:
			return !onlyPassing
		}
		return false
	})
}

// WithTags returns the entries whose service has every one of tags,
// compared case-insensitively as the catalog's ?tag= does. The result
// shares entries' backing array when nothing is filtered out.
func WithTags(entries []ServiceEntry, tags ...string) []ServiceEntry {
	if len(tags) == 0 {
		return entries
	}
	return filter(entries, func(e *ServiceEntry) bool {
		for _, t := range tags {
			if !slices.ContainsFunc(e.Service.Tags, func(h string) bool { return strings.EqualFold(h, t) }) {
				return false
			}
		}
		return true
	})
}

// filter keeps the entries keep accepts, allocating only when it drops
// one.
func filter(entries []ServiceEntry, keep func(*ServiceEntry) bool) []ServiceEntry {
	for i := range entries {
		if keep(&entries[i]) {
			continue
		}
		out := slices.Clone(entries[:i])
		for j := i + 1; j < len(entries); j++ {
			if keep(&entries[j]) {
				out = append(out, entries[j])
			}
		}
		return out
	}
	return entries
}

// Address is where to reach the instance: the service's address, or its
// node's when it has none (as DNS and clients do).
func (e *ServiceEntry) Address() string {
	if e.Service.Address != "" {
		return e.Service.Address
	}
	return e.Node.Address
}
