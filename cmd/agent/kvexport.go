package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// kvExportEntry is one element of `consul kv export`'s JSON array, the
// format `kv import` reads back: value is base64.
type kvExportEntry struct {
	Key   string `json:"key"`
	Flags uint64 `json:"flags"`
	Value string `json:"value"`
}

// Import writes in transactions: at most txnMaxOps set operations (the
// limit CONSUL-COMPAT.md promises for /v1/txn) and, past the first entry,
// at most txnMaxValueBytes of values, so a chunk stays under the request
// size servers accept (Consul's default is 512 KiB per transaction).
const (
	txnMaxOps        = 128
	txnMaxValueBytes = 256 << 10
)

func kvExport(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "kv export"
	fs, cf := newCommandFlags(name, stderr, helpText("agent kv export [options] [PREFIX]",
		"Prints every entry under PREFIX (all of them without one) as a JSON array\n"+
			"of {\"key\", \"flags\", \"value\"} with base64 values, like `consul kv export`.\n"+
			"`agent kv import` and `consul kv import` read it back.",
		"agent kv export > kv.json",
		"agent kv export vault/ > vault.json"))
	stale := fs.Bool("stale", false, "Let any server answer from its own state, possibly stale")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	prefix := ""
	switch fs.NArg() {
	case 0:
	case 1:
		prefix = strings.TrimPrefix(fs.Arg(0), "/")
	default:
		return failf(stderr, name, "Too many arguments (expected 1, got %d)", fs.NArg())
	}
	q := url.Values{"recurse": {""}}
	if *stale {
		q.Set("stale", "")
	}
	ctx, cancel := clientContext()
	defer cancel()
	var pairs []kvPair
	if _, err := kvRead(ctx, cf, prefix, q, &pairs); err != nil {
		return failf(stderr, name, "Error querying the agent: %v", err)
	}
	entries := make([]kvExportEntry, len(pairs))
	for i, p := range pairs {
		entries[i] = kvExportEntry{Key: p.Key, Flags: p.Flags, Value: base64.StdEncoding.EncodeToString(p.Value)}
	}
	out, err := json.MarshalIndent(entries, "", "\t")
	if err != nil {
		return failf(stderr, name, "Error! Cannot encode entries: %v", err)
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}

// importEntry is an export entry checked and decoded, ready to write.
type importEntry struct {
	key   string
	flags uint64
	value []byte
}

func kvImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const name = "kv import"
	fs, cf := newCommandFlags(name, stderr, helpText("agent kv import [options] DATA",
		"Writes the entries of a JSON array in `kv export`'s format, like `consul kv\n"+
			"import`. DATA is the JSON itself, \"@path\" for a file or \"-\" for stdin.\n"+
			"Every entry is checked before anything is written. Entries are written in\n"+
			"transactions of up to 128 keys (each all or nothing), or key by key when\n"+
			"the agent has no /v1/txn. Prints \"Imported: KEY\" per key written.",
		"agent kv import @kv.json",
		"agent kv export vault/ | agent kv import -",
		"agent kv import -prefix staging/ @kv.json"))
	prefix := fs.String("prefix", "", "Prepend this path to every imported key (a \"/\" is added between)")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	switch fs.NArg() {
	case 0:
		return failf(stderr, name, "Error! Missing DATA argument")
	case 1:
	default:
		return failf(stderr, name, "Too many arguments (expected 1, got %d)", fs.NArg())
	}
	if fs.Arg(0) == "" {
		return failf(stderr, name, "Error! Empty DATA argument")
	}
	data, err := loadData(fs.Arg(0), stdin)
	if err != nil {
		return failf(stderr, name, "Error! %v", err)
	}
	entries, err := parseImport(data, *prefix)
	if err != nil {
		return failf(stderr, name, "Error! %v", err)
	}
	ctx, cancel := clientContext()
	defer cancel()
	imp := kvImporter{cf: cf, stdout: stdout, useTxn: true}
	if err := imp.write(ctx, entries); err != nil {
		return failf(stderr, name, "Error! Failed writing data: %v", err)
	}
	return 0
}

// parseImport decodes and checks the whole input, so that malformed input
// writes nothing.
func parseImport(data []byte, prefix string) ([]importEntry, error) {
	var raw []kvExportEntry
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("cannot parse the data as a JSON array of {\"key\", \"flags\", \"value\"}: %w", err)
	}
	prefix = strings.Trim(prefix, "/")
	out := make([]importEntry, 0, len(raw))
	for i, e := range raw {
		key := strings.TrimPrefix(e.Key, "/")
		if key == "" {
			return nil, fmt.Errorf("entry %d: missing key", i)
		}
		if prefix != "" {
			key = prefix + "/" + key
		}
		v, err := base64.StdEncoding.DecodeString(e.Value)
		if err != nil {
			return nil, fmt.Errorf("entry %d (key %s): value is not valid base64: %v", i, e.Key, err)
		}
		out = append(out, importEntry{key: key, flags: e.Flags, value: v})
	}
	return out, nil
}

// kvImporter writes import entries, through /v1/txn while the agent has it.
type kvImporter struct {
	cf     *clientFlags
	stdout io.Writer
	useTxn bool
}

func (m *kvImporter) write(ctx context.Context, entries []importEntry) error {
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && n < txnMaxOps && (n == 0 || size+len(entries[n].value) <= txnMaxValueBytes) {
			size += len(entries[n].value)
			n++
		}
		chunk := entries[:n]
		entries = entries[n:]
		if m.useTxn {
			written, err := m.writeTxn(ctx, chunk)
			if err != nil {
				return err
			}
			if written {
				for _, e := range chunk {
					fmt.Fprintf(m.stdout, "Imported: %s\n", e.key)
				}
				continue
			}
		}
		if err := m.writeEach(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

type txnOp struct {
	KV txnKVOp
}

type txnKVOp struct {
	Verb  string
	Key   string
	Value []byte
	Flags uint64
}

type txnResponse struct {
	Errors []struct {
		OpIndex int
		What    string
	}
}

// writeTxn writes chunk in one transaction. written is false when the
// agent cannot take it as a transaction (no /v1/txn, or the request is too
// large) and the caller should write key by key instead.
func (m *kvImporter) writeTxn(ctx context.Context, chunk []importEntry) (written bool, err error) {
	ops := make([]txnOp, len(chunk))
	for i, e := range chunk {
		ops[i] = txnOp{KV: txnKVOp{Verb: "set", Key: e.key, Value: e.value, Flags: e.flags}}
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	resp, err := m.cf.send(ctx, "PUT", "/v1/txn", nil, body)
	if err != nil {
		return false, err
	}
	switch {
	case resp.ok():
		return true, nil
	case resp.status == 404 || resp.status == 405 || resp.status == 501:
		m.useTxn = false // no transaction endpoint: key by key from now on
		return false, nil
	case resp.status == 413:
		return false, nil
	case resp.status == 409:
		var tr txnResponse
		if json.Unmarshal(resp.body, &tr) == nil && len(tr.Errors) > 0 {
			e := tr.Errors[0]
			key := "?"
			if e.OpIndex >= 0 && e.OpIndex < len(chunk) {
				key = chunk[e.OpIndex].key
			}
			return false, fmt.Errorf("key %s: %s (no key of this batch of %d was written)", key, e.What, len(chunk))
		}
	}
	return false, resp.err()
}

func (m *kvImporter) writeEach(ctx context.Context, chunk []importEntry) error {
	for _, e := range chunk {
		q := url.Values{}
		if e.flags != 0 {
			q.Set("flags", strconv.FormatUint(e.flags, 10))
		}
		resp, err := m.cf.send(ctx, "PUT", kvPath(e.key), q, e.value)
		if err == nil && !resp.ok() {
			err = resp.err()
		}
		ok := false
		if err == nil {
			ok, err = resp.boolean()
		}
		if err == nil && !ok {
			err = fmt.Errorf("the agent refused the write")
		}
		if err != nil {
			return fmt.Errorf("key %s: %w", e.key, err)
		}
		fmt.Fprintf(m.stdout, "Imported: %s\n", e.key)
	}
	return nil
}
