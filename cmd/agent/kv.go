package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// kvPair is one entry of GET /v1/kv/:key. Value arrives base64-encoded
// (null when empty), which encoding/json decodes into []byte.
type kvPair struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Value       []byte
	Session     string
}

var kvSubcommands = map[string]subcommand{
	"get":    {"Retrieve or list data from the K/V store", kvGet},
	"put":    {"Set or update data in the K/V store", kvPut},
	"delete": {"Remove data from the K/V store", kvDelete},
	"export": {"Export part of the K/V tree as JSON", kvExport},
	"import": {"Import K/V entries exported as JSON", kvImport},
}

const kvDesc = "Reads and writes the cluster's key/value store, like `consul kv`."

func kvCommand(args []string, stdout, stderr io.Writer) int {
	return kvMain(args, os.Stdin, stdout, stderr)
}

func kvMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return dispatch("kv", kvDesc, kvSubcommands, args, stdin, stdout, stderr)
}

// kvPath is the API path of a key. Keys never start with "/" (Consul's
// client refuses them); users type them anyway, so the CLI strips one.
func kvPath(key string) string { return "/v1/kv/" + key }

func kvGet(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "kv get"
	fs, cf := newCommandFlags(name, stderr, helpText("agent kv get [options] [KEY_OR_PREFIX]",
		"Prints the value stored at KEY followed by a newline, like `consul kv get`.\n"+
			"A missing key is an error (exit 1). With -recurse, prints key:value for\n"+
			"every key under the prefix; with -keys, lists key names up to -separator.",
		"agent kv get redis/config/connections",
		"agent kv get -detailed redis/config/connections",
		"agent kv get -recurse redis/",
		"agent kv get -keys redis/",
		"agent kv get -keys -separator \"\" redis/"))
	base64Out := fs.Bool("base64", false, "Print values base64-encoded")
	detailed := fs.Bool("detailed", false, "Print the entry's indexes, flags and session as well as its value")
	keys := fs.Bool("keys", false, "List key names under the prefix instead of values")
	recurse := fs.Bool("recurse", false, "Treat the key as a prefix and print every entry under it")
	separator := fs.String("separator", "/", "With -keys, list only up to this separator (\"\" lists every key)")
	stale := fs.Bool("stale", false, "Let any server answer from its own state, possibly stale")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	key := ""
	switch fs.NArg() {
	case 0:
	case 1:
		key = strings.TrimPrefix(fs.Arg(0), "/")
	default:
		return failf(stderr, name, "Too many arguments (expected 1, got %d)", fs.NArg())
	}
	if key == "" && !*recurse && !*keys {
		return failf(stderr, name, "Error! Missing KEY argument")
	}
	q := url.Values{}
	if *stale {
		q.Set("stale", "")
	}
	ctx, cancel := clientContext()
	defer cancel()

	switch {
	case *keys:
		q.Set("keys", "")
		if *separator != "" {
			q.Set("separator", *separator)
		}
		var list []string
		found, err := kvRead(ctx, cf, key, q, &list)
		if err != nil {
			return failf(stderr, name, "Error querying the agent: %v", err)
		}
		if found {
			for _, k := range list {
				fmt.Fprintln(stdout, k)
			}
		}
		return 0

	case *recurse:
		q.Set("recurse", "")
		var pairs []kvPair
		if _, err := kvRead(ctx, cf, key, q, &pairs); err != nil {
			return failf(stderr, name, "Error querying the agent: %v", err)
		}
		for i, p := range pairs {
			if *detailed {
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				printDetailed(stdout, p, *base64Out)
				continue
			}
			fmt.Fprintf(stdout, "%s:%s\n", p.Key, formatValue(p.Value, *base64Out))
		}
		return 0

	default:
		var pairs []kvPair
		found, err := kvRead(ctx, cf, key, q, &pairs)
		if err != nil {
			return failf(stderr, name, "Error querying the agent: %v", err)
		}
		if !found || len(pairs) == 0 {
			return failf(stderr, name, "Error! No key exists at: %s", key)
		}
		if *detailed {
			printDetailed(stdout, pairs[0], *base64Out)
			return 0
		}
		fmt.Fprintf(stdout, "%s\n", formatValue(pairs[0].Value, *base64Out))
		return 0
	}
}

// kvRead GETs a key or prefix into out. found is false on 404, which the
// K/V API uses for "nothing there", not for failure.
func kvRead(ctx context.Context, cf *clientFlags, key string, q url.Values, out any) (found bool, err error) {
	resp, err := cf.send(ctx, "GET", kvPath(key), q, nil)
	if err != nil {
		return false, err
	}
	if resp.status == 404 {
		return false, nil
	}
	if !resp.ok() {
		return false, resp.err()
	}
	return true, resp.decode(out)
}

func formatValue(v []byte, b64 bool) string {
	if b64 {
		return base64.StdEncoding.EncodeToString(v)
	}
	return string(v)
}

// printDetailed prints an entry the way `consul kv get -detailed` does: one
// "Field  value" line per field, aligned, "-" for no session.
func printDetailed(w io.Writer, p kvPair, b64 bool) {
	tw := tabwriter.NewWriter(w, 0, 2, 6, ' ', 0)
	fmt.Fprintf(tw, "CreateIndex\t%d\n", p.CreateIndex)
	fmt.Fprintf(tw, "Flags\t%d\n", p.Flags)
	fmt.Fprintf(tw, "Key\t%s\n", p.Key)
	fmt.Fprintf(tw, "LockIndex\t%d\n", p.LockIndex)
	fmt.Fprintf(tw, "ModifyIndex\t%d\n", p.ModifyIndex)
	session := p.Session
	if session == "" {
		session = "-"
	}
	fmt.Fprintf(tw, "Session\t%s\n", session)
	fmt.Fprintf(tw, "Value\t%s\n", formatValue(p.Value, b64))
	_ = tw.Flush()
}

func kvPut(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const name = "kv put"
	fs, cf := newCommandFlags(name, stderr, helpText("agent kv put [options] KEY [DATA]",
		"Writes DATA to KEY, like `consul kv put`. DATA is taken as given; \"-\" reads\n"+
			"it from stdin and \"@path\" from a file. Without DATA the value is empty.\n"+
			"With -cas the write happens only if the key's ModifyIndex is still\n"+
			"-modify-index (0: only if the key does not exist yet).",
		"agent kv put redis/config/connections 5",
		"agent kv put redis/config/tls @cert.pem",
		"echo hello | agent kv put greeting -",
		"agent kv put -cas -modify-index 123 redis/config/connections 10",
		"agent kv put -acquire -session 7c6d-... service/leader \"$(hostname)\""))
	acquire := fs.Bool("acquire", false, "Take the lock on KEY for -session (creates the key if missing)")
	release := fs.Bool("release", false, "Give up -session's lock on KEY")
	session := fs.String("session", "", "Session ID for -acquire and -release")
	cas := fs.Bool("cas", false, "Check-and-set: write only if the key's ModifyIndex is -modify-index")
	modifyIndex := fs.Uint64("modify-index", 0, "ModifyIndex for -cas (0: only if the key does not exist)")
	flags := fs.Uint64("flags", 0, "Unsigned integer stored with the entry for clients' own use")
	b64 := fs.Bool("base64", false, "DATA is base64-encoded; store the decoded bytes")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	var key string
	var data []byte
	switch fs.NArg() {
	case 0:
		return failf(stderr, name, "Error! Missing KEY argument")
	case 1, 2:
		key = strings.TrimPrefix(fs.Arg(0), "/")
	default:
		return failf(stderr, name, "Too many arguments (expected 1 or 2, got %d)", fs.NArg())
	}
	if key == "" {
		return failf(stderr, name, "Error! Missing KEY argument")
	}
	if fs.NArg() == 2 {
		var err error
		if data, err = loadData(fs.Arg(1), stdin); err != nil {
			return failf(stderr, name, "Error! %v", err)
		}
	}
	if *b64 {
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil {
			return failf(stderr, name, "Error! Cannot base64-decode data: %v", err)
		}
		data = dec
	}
	switch {
	case *acquire && *release:
		return failf(stderr, name, "Error! -acquire and -release cannot be used together")
	case (*acquire || *release) && *session == "":
		return failf(stderr, name, "Error! Missing -session (required with -acquire and -release)")
	case *cas && (*acquire || *release):
		return failf(stderr, name, "Error! -cas cannot be combined with -acquire or -release")
	case *cas && !flagSet(fs, "modify-index"):
		return failf(stderr, name, "Error! Must specify -modify-index with -cas (0 writes only if the key does not exist)")
	case !*cas && flagSet(fs, "modify-index"):
		return failf(stderr, name, "Error! Cannot specify -modify-index without -cas")
	}

	q := url.Values{}
	if *flags != 0 {
		q.Set("flags", strconv.FormatUint(*flags, 10))
	}
	switch {
	case *cas:
		q.Set("cas", strconv.FormatUint(*modifyIndex, 10))
	case *acquire:
		q.Set("acquire", *session)
	case *release:
		q.Set("release", *session)
	}
	ctx, cancel := clientContext()
	defer cancel()
	if data == nil {
		data = []byte{}
	}
	resp, err := cf.send(ctx, "PUT", kvPath(key), q, data)
	if err == nil && !resp.ok() {
		err = resp.err()
	}
	var ok bool
	if err == nil {
		ok, err = resp.boolean()
	}
	if err != nil {
		return failf(stderr, name, "Error! Failed writing data: %v", err)
	}
	switch {
	case *acquire && !ok:
		return failf(stderr, name, "Error! Did not acquire lock on: %s", key)
	case *acquire:
		fmt.Fprintf(stdout, "Success! Lock acquired on: %s\n", key)
	case *release && !ok:
		return failf(stderr, name, "Error! Did not release lock on: %s", key)
	case *release:
		fmt.Fprintf(stdout, "Success! Lock released on: %s\n", key)
	case *cas && !ok:
		return failf(stderr, name, "Error! Did not write to %s: CAS failed", key)
	case !ok:
		return failf(stderr, name, "Error! Did not write to %s: the agent refused the write", key)
	default:
		fmt.Fprintf(stdout, "Success! Data written to: %s\n", key)
	}
	return 0
}

// loadData reads a command-line data argument the way Consul's CLI does:
// "@path" is a file's contents ("@-" is stdin), "-" alone is stdin, and
// anything else is the data itself.
func loadData(arg string, stdin io.Reader) ([]byte, error) {
	readStdin := func() ([]byte, error) {
		var b bytes.Buffer
		if _, err := io.Copy(&b, stdin); err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b.Bytes(), nil
	}
	switch {
	case arg == "-" || arg == "@-":
		return readStdin()
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", arg[1:], err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

func kvDelete(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "kv delete"
	fs, cf := newCommandFlags(name, stderr, helpText("agent kv delete [options] KEY_OR_PREFIX",
		"Removes KEY from the K/V store, like `consul kv delete`; deleting a missing\n"+
			"key succeeds. -recurse removes every key under the prefix (with an empty\n"+
			"prefix: the whole store). -cas deletes only if the key's ModifyIndex is\n"+
			"still -modify-index.",
		"agent kv delete redis/config/connections",
		"agent kv delete -recurse redis/",
		"agent kv delete -cas -modify-index 456 redis/config/connections"))
	recurse := fs.Bool("recurse", false, "Delete every key under the prefix")
	cas := fs.Bool("cas", false, "Check-and-set: delete only if the key's ModifyIndex is -modify-index")
	modifyIndex := fs.Uint64("modify-index", 0, "ModifyIndex for -cas (above 0)")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	key := ""
	switch fs.NArg() {
	case 0:
	case 1:
		key = strings.TrimPrefix(fs.Arg(0), "/")
	default:
		return failf(stderr, name, "Too many arguments (expected 1, got %d)", fs.NArg())
	}
	switch {
	case key == "" && !*recurse:
		return failf(stderr, name, "Error! Missing KEY argument")
	case *cas && *recurse:
		return failf(stderr, name, "Error! Cannot specify both -cas and -recurse")
	case *cas && *modifyIndex == 0:
		return failf(stderr, name, "Error! Must specify -modify-index above 0 with -cas")
	case !*cas && flagSet(fs, "modify-index"):
		return failf(stderr, name, "Error! Cannot specify -modify-index without -cas")
	}
	q := url.Values{}
	switch {
	case *recurse:
		q.Set("recurse", "")
	case *cas:
		q.Set("cas", strconv.FormatUint(*modifyIndex, 10))
	}
	ctx, cancel := clientContext()
	defer cancel()
	resp, err := cf.send(ctx, "DELETE", kvPath(key), q, nil)
	if err == nil && !resp.ok() {
		err = resp.err()
	}
	ok := true
	if err == nil && *cas {
		ok, err = resp.boolean()
	}
	switch {
	case err != nil && *recurse:
		return failf(stderr, name, "Error! Did not delete prefix %s: %v", key, err)
	case err != nil:
		return failf(stderr, name, "Error! Did not delete key %s: %v", key, err)
	case !ok:
		return failf(stderr, name, "Error! Did not delete key %s: CAS failed", key)
	case *recurse:
		fmt.Fprintf(stdout, "Success! Deleted keys with prefix: %s\n", key)
	default:
		fmt.Fprintf(stdout, "Success! Deleted key: %s\n", key)
	}
	return 0
}
