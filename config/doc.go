// Package config turns defaults, configuration files (JSON or HCL, Consul's
// keys), environment variables and command-line flags into one agent Config,
// and checks it. It does not start anything: the agent package wires the
// resulting Config into components.
//
// # Sources and precedence
//
// Later sources override earlier ones, key by key; a source overrides only
// the keys it sets:
//
//  1. DefaultConfig.
//  2. Dev-mode defaults, when -dev is given (see DevConfig's doc).
//  3. Files from -config-file and -config-dir, in command-line order; a
//     directory contributes its *.json and *.hcl files in lexical order.
//  4. OUTRIGGER_* environment variables (the list is in EnvVars' doc).
//  5. Flags the user actually set (flag.FlagSet.Visit).
//
// Lists and maps merge differently from scalars:
//
//   - retry_join: files append to each other (Consul's behaviour); the
//     environment replaces what the files gave; flags replace everything.
//   - node_meta: merged key by key across all sources; a later value for the
//     same key wins.
//   - The raw sections in Config.Extra: lists (services, checks, watches,
//     recursors, and the singular service and check) append across files;
//     the others (dns_config, domain, alt_domain) are last-wins.
//   - The -service flag and its companions (-service-port, -service-tag,
//     -service-address, -check-http, -check-tcp, -check-ttl,
//     -check-interval, -check-timeout) add one entry to Extra's "service"
//     list after the files' ones; they are flags only.
//
// # Files
//
// JSON and HCL (version 1, Consul's dialect) files go through one decoder:
// each is parsed into a generic map first, so a key behaves the same in both
// formats. An unknown key is an error that suggests the nearest known key; a
// value of the wrong type is an error naming the key and the value. As
// Consul's weak decoding does, a string holding a number or boolean is
// accepted where one is wanted, and a lone string where a list of strings
// is. A JSON null leaves its key unset. Files may be empty.
//
// Load does not validate: call Config.Validate, then Config.CheckPorts
// before binding anything.
package config
