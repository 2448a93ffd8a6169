package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runKV runs `agent kv SUB -http-addr <fake> ARGS...` and returns the exit
// code, stdout and stderr.
func runKV(t *testing.T, f *fakeConsul, stdin string, sub string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{sub, "-http-addr", f.addr()}, args...)
	code := kvMain(full, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// mustKV runs a kv command that must succeed and returns its stdout.
func mustKV(t *testing.T, f *fakeConsul, sub string, args ...string) string {
	t.Helper()
	code, out, errs := runKV(t, f, "", sub, args...)
	if code != 0 {
		t.Fatalf("kv %s %v: exit %d, stderr %q", sub, args, code, errs)
	}
	return out
}

func TestKVPutGet(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(file, []byte("-----BEGIN-----\nabc\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		stdin string
		args  []string
		key   string
		value string
		flags uint64
	}{
		{name: "plain", args: []string{"redis/config/connections", "5"}, key: "redis/config/connections", value: "5"},
		{name: "leading slash", args: []string{"/web/port", "80"}, key: "web/port", value: "80"},
		{name: "no value", args: []string{"empty"}, key: "empty", value: ""},
		{name: "stdin", stdin: "from stdin\n", args: []string{"in", "-"}, key: "in", value: "from stdin\n"},
		{name: "@stdin", stdin: "x", args: []string{"in2", "@-"}, key: "in2", value: "x"},
		{name: "file", args: []string{"tls", "@" + file}, key: "tls", value: "-----BEGIN-----\nabc\n"},
		{name: "dash word", args: []string{"neg", "-5"}, key: "neg", value: "-5"},
		{name: "flags", args: []string{"-flags", "42", "flagged", "v"}, key: "flagged", value: "v", flags: 42},
		{name: "base64", args: []string{"-base64", "bin", base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})}, key: "bin", value: "\x00\x01\x02\xff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKV(t, f, tc.stdin, "put", tc.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if want := "Success! Data written to: " + tc.key + "\n"; out != want {
				t.Errorf("stdout = %q, want %q", out, want)
			}
			p, ok := f.get(tc.key)
			if !ok || string(p.Value) != tc.value || p.Flags != tc.flags {
				t.Fatalf("stored %q = %+v (present %v), want value %q flags %d", tc.key, p, ok, tc.value, tc.flags)
			}
			if got := mustKV(t, f, "get", tc.key); got != tc.value+"\n" {
				t.Errorf("kv get = %q, want %q", got, tc.value+"\n")
			}
		})
	}

	t.Run("get base64", func(t *testing.T) {
		if got := mustKV(t, f, "get", "-base64", "bin"); got != "AAEC/w==\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("get detailed", func(t *testing.T) {
		p, _ := f.get("flagged")
		want := fmt.Sprintf("CreateIndex      %d\nFlags            42\nKey              flagged\nLockIndex        0\nModifyIndex      %d\nSession          -\nValue            v\n",
			p.CreateIndex, p.ModifyIndex)
		if got := mustKV(t, f, "get", "-detailed", "flagged"); got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("get missing", func(t *testing.T) {
		code, out, errs := runKV(t, f, "", "get", "nope/x")
		if code != 1 || out != "" || !strings.Contains(errs, "Error! No key exists at: nope/x") || !strings.HasPrefix(errs, "agent kv get: ") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("stale", func(t *testing.T) {
		mustKV(t, f, "get", "-stale", "in")
		f.mu.Lock()
		last := f.queries[len(f.queries)-1]
		f.mu.Unlock()
		if !strings.Contains(last, "stale") {
			t.Errorf("request %q lacks ?stale", last)
		}
	})
}

func TestKVGetRecurseAndKeys(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.set("web/bar", "1", 0)
	f.set("web/foo", "2", 0)
	f.set("web/sub/a", "3", 7)
	f.set("other", "x", 0)

	if got, want := mustKV(t, f, "get", "-recurse", "web/"), "web/bar:1\nweb/foo:2\nweb/sub/a:3\n"; got != want {
		t.Errorf("-recurse = %q, want %q", got, want)
	}
	if got, want := mustKV(t, f, "get", "-recurse", "-base64", "web/sub"), "web/sub/a:Mw==\n"; got != want {
		t.Errorf("-recurse -base64 = %q, want %q", got, want)
	}
	if got, want := mustKV(t, f, "get", "-keys", "web/"), "web/bar\nweb/foo\nweb/sub/\n"; got != want {
		t.Errorf("-keys = %q, want %q", got, want)
	}
	if got, want := mustKV(t, f, "get", "-keys", "-separator", "", "web/"), "web/bar\nweb/foo\nweb/sub/a\n"; got != want {
		t.Errorf("-keys -separator \"\" = %q, want %q", got, want)
	}
	if got, want := mustKV(t, f, "get", "-keys"), "other\nweb/\n"; got != want {
		t.Errorf("-keys at the root = %q, want %q", got, want)
	}
	// Nothing under a prefix is not an error for listings.
	if got := mustKV(t, f, "get", "-recurse", "nothing/"); got != "" {
		t.Errorf("-recurse of an empty prefix = %q", got)
	}
	if got := mustKV(t, f, "get", "-keys", "nothing/"); got != "" {
		t.Errorf("-keys of an empty prefix = %q", got)
	}
	got := mustKV(t, f, "get", "-recurse", "-detailed", "web/")
	blocks := strings.Split(got, "\n\n")
	if len(blocks) != 3 || !strings.Contains(blocks[2], "Key              web/sub/a") || !strings.Contains(blocks[2], "Flags            7") {
		t.Errorf("-recurse -detailed =\n%s", got)
	}
}

func TestKVPutCAS(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)

	// -modify-index 0: only if absent.
	if out := mustKV(t, f, "put", "-cas", "-modify-index", "0", "c", "first"); out != "Success! Data written to: c\n" {
		t.Errorf("create-only put: %q", out)
	}
	code, _, errs := runKV(t, f, "", "put", "-cas", "-modify-index", "0", "c", "second")
	if code != 1 || !strings.Contains(errs, "Error! Did not write to c: CAS failed") {
		t.Errorf("create-only put over an existing key: exit %d, stderr %q", code, errs)
	}
	p, _ := f.get("c")
	code, _, errs = runKV(t, f, "", "put", "-cas", "-modify-index", fmt.Sprint(p.ModifyIndex+100), "c", "stale")
	if code != 1 || !strings.Contains(errs, "Error! Did not write to c: CAS failed") {
		t.Errorf("put with a stale index: exit %d, stderr %q", code, errs)
	}
	mustKV(t, f, "put", "-cas", "-modify-index", fmt.Sprint(p.ModifyIndex), "c", "third")
	if p, _ := f.get("c"); string(p.Value) != "third" {
		t.Errorf("value after CAS = %q, want third", p.Value)
	}
}

func TestKVPutAcquireRelease(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	mine, theirs := f.newSession(), f.newSession()

	if out := mustKV(t, f, "put", "-acquire", "-session", mine, "leader", "me"); out != "Success! Lock acquired on: leader\n" {
		t.Errorf("acquire: %q", out)
	}
	if p, _ := f.get("leader"); p.Session != mine || p.LockIndex != 1 || string(p.Value) != "me" {
		t.Errorf("after acquire: %+v", p)
	}
	code, _, errs := runKV(t, f, "", "put", "-acquire", "-session", theirs, "leader", "them")
	if code != 1 || !strings.Contains(errs, "Error! Did not acquire lock on: leader") {
		t.Errorf("acquire of a held lock: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runKV(t, f, "", "put", "-release", "-session", theirs, "leader")
	if code != 1 || !strings.Contains(errs, "Error! Did not release lock on: leader") {
		t.Errorf("release by a non-holder: exit %d, stderr %q", code, errs)
	}
	if out := mustKV(t, f, "put", "-release", "-session", mine, "leader"); out != "Success! Lock released on: leader\n" {
		t.Errorf("release: %q", out)
	}
	if p, _ := f.get("leader"); p.Session != "" {
		t.Errorf("after release: session %q", p.Session)
	}
	code, _, errs = runKV(t, f, "", "put", "-acquire", "-session", "no-such-session", "leader")
	if code != 1 || !strings.Contains(errs, "Error! Failed writing data") || !strings.Contains(errs, "invalid session") {
		t.Errorf("acquire with an unknown session: exit %d, stderr %q", code, errs)
	}
}

func TestKVDelete(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.set("a", "1", 0)
	f.set("dir/x", "1", 0)
	f.set("dir/y", "1", 0)
	f.set("keep", "1", 0)

	if out := mustKV(t, f, "delete", "a"); out != "Success! Deleted key: a\n" {
		t.Errorf("delete: %q", out)
	}
	if out := mustKV(t, f, "delete", "missing"); out != "Success! Deleted key: missing\n" {
		t.Errorf("delete of a missing key: %q", out)
	}
	if out := mustKV(t, f, "delete", "-recurse", "dir/"); out != "Success! Deleted keys with prefix: dir/\n" {
		t.Errorf("delete -recurse: %q", out)
	}
	if got := f.keys(); len(got) != 1 || got[0] != "keep" {
		t.Errorf("keys left = %v, want [keep]", got)
	}
	p, _ := f.get("keep")
	code, _, errs := runKV(t, f, "", "delete", "-cas", "-modify-index", fmt.Sprint(p.ModifyIndex+1), "keep")
	if code != 1 || !strings.Contains(errs, "Error! Did not delete key keep: CAS failed") {
		t.Errorf("delete with a stale index: exit %d, stderr %q", code, errs)
	}
	if out := mustKV(t, f, "delete", "-cas", "-modify-index", fmt.Sprint(p.ModifyIndex), "keep"); out != "Success! Deleted key: keep\n" {
		t.Errorf("delete -cas: %q", out)
	}
	if len(f.keys()) != 0 {
		t.Errorf("keys left = %v", f.keys())
	}
}

func TestKVExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	src := newFakeConsul(t)
	src.set("app/name", "outrigger", 0)
	src.set("app/bin", "\x00\xff\x10", 9)
	src.set("app/empty", "", 0)
	src.set("app/dir/", "", 0)
	src.set("zzz", "outside", 0)

	exported := mustKV(t, src, "export", "app/")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(exported), &entries); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, exported)
	}
	if len(entries) != 4 {
		t.Fatalf("exported %d entries, want 4:\n%s", len(entries), exported)
	}
	for _, e := range entries {
		if len(e) != 3 || e["key"] == nil || e["flags"] == nil || e["value"] == nil {
			t.Errorf("entry %v: want exactly key, flags, value", e)
		}
	}
	if !strings.Contains(exported, "\t{\n\t\t\"key\": \"app/bin\",\n\t\t\"flags\": 9,\n\t\t\"value\": \"AP8Q\"\n\t}") {
		t.Errorf("export not in Consul's layout:\n%s", exported)
	}
	if got := mustKV(t, newFakeConsul(t), "export"); got != "[]\n" {
		t.Errorf("export of an empty store = %q, want []", got)
	}

	file := filepath.Join(t.TempDir(), "kv.json")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, dst *fakeConsul, prefix string) {
		t.Helper()
		for _, k := range []string{"app/name", "app/bin", "app/empty", "app/dir/"} {
			want, _ := src.get(k)
			got, ok := dst.get(prefix + k)
			if !ok || !bytes.Equal(got.Value, want.Value) || got.Flags != want.Flags {
				t.Errorf("%s: got %+v (present %v), want value %q flags %d", prefix+k, got, ok, want.Value, want.Flags)
			}
		}
		if n := len(dst.keys()); n != 4 {
			t.Errorf("imported %d keys, want 4: %v", n, dst.keys())
		}
	}
	wantOut := "Imported: app/bin\nImported: app/dir/\nImported: app/empty\nImported: app/name\n"

	t.Run("file via txn", func(t *testing.T) {
		dst := newFakeConsul(t)
		if out := mustKV(t, dst, "import", "@"+file); out != wantOut {
			t.Errorf("stdout = %q, want %q", out, wantOut)
		}
		check(t, dst, "")
		if n := dst.counter(&dst.txnCalls); n != 1 {
			t.Errorf("%d transactions, want 1", n)
		}
		if n := dst.counter(&dst.kvPuts); n != 0 {
			t.Errorf("%d single-key PUTs, want 0", n)
		}
	})
	t.Run("stdin without txn", func(t *testing.T) {
		dst := newFakeConsul(t)
		dst.noTxn = true
		code, out, errs := runKV(t, dst, exported, "import", "-")
		if code != 0 || out != wantOut {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
		check(t, dst, "")
		if n := dst.counter(&dst.kvPuts); n != 4 {
			t.Errorf("%d single-key PUTs, want 4", n)
		}
	})
	t.Run("inline with prefix", func(t *testing.T) {
		dst := newFakeConsul(t)
		mustKV(t, dst, "import", "-prefix", "staging/", exported)
		check(t, dst, "staging/")
	})
}

func TestKVImportChunks(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	var entries []kvExportEntry
	for i := range 300 {
		entries = append(entries, kvExportEntry{Key: fmt.Sprintf("bulk/%03d", i), Value: base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(i)))})
	}
	data, _ := json.Marshal(entries)
	out := mustKV(t, f, "import", string(data))
	if n := strings.Count(out, "Imported: "); n != 300 {
		t.Errorf("%d Imported lines, want 300", n)
	}
	if n := f.counter(&f.txnCalls); n != 3 {
		t.Errorf("%d transactions, want 3 (128+128+44)", n)
	}
	if n := len(f.keys()); n != 300 {
		t.Errorf("%d keys stored, want 300", n)
	}

	// Large values split chunks by size too.
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 200<<10))
	data, _ = json.Marshal([]kvExportEntry{{Key: "big/1", Value: big}, {Key: "big/2", Value: big}, {Key: "big/3", Value: big}})
	before := f.counter(&f.txnCalls)
	mustKV(t, f, "import", string(data))
	if n := f.counter(&f.txnCalls) - before; n != 3 {
		t.Errorf("%d transactions for three 200 KiB values, want 3", n)
	}
}

func TestKVImportTxnConflict(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.txnReject = "b"
	data := `[{"key":"a","flags":0,"value":"MQ=="},{"key":"b","flags":0,"value":"Mg=="}]`
	code, out, errs := runKV(t, f, "", "import", data)
	if code != 1 || out != "" || !strings.Contains(errs, "key b: rejected by the test") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if len(f.keys()) != 0 {
		t.Errorf("a failed transaction left keys: %v", f.keys())
	}
}

func TestKVBadInputs(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	f.set("exists", "v", 0)
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"get without key", []string{"get"}, "agent kv get: Error! Missing KEY argument"},
		{"get slash only", []string{"get", "/"}, "Error! Missing KEY argument"},
		{"get two keys", []string{"get", "a", "b"}, "Too many arguments (expected 1, got 2)"},
		{"get missing key", []string{"get", "nope"}, "Error! No key exists at: nope"},
		{"get unknown flag", []string{"get", "-bogus", "a"}, "flag provided but not defined: -bogus"},
		{"put without key", []string{"put"}, "agent kv put: Error! Missing KEY argument"},
		{"put three args", []string{"put", "a", "b", "c"}, "Too many arguments (expected 1 or 2, got 3)"},
		{"put bad flags", []string{"put", "-flags", "abc", "k", "v"}, `invalid value "abc" for flag -flags`},
		{"put negative flags", []string{"put", "-flags", "-1", "k", "v"}, `invalid value "-1" for flag -flags`},
		{"put cas without index", []string{"put", "-cas", "k", "v"}, "Must specify -modify-index with -cas"},
		{"put index without cas", []string{"put", "-modify-index", "3", "k", "v"}, "Cannot specify -modify-index without -cas"},
		{"put acquire without session", []string{"put", "-acquire", "k"}, "Missing -session"},
		{"put release without session", []string{"put", "-release", "k"}, "Missing -session"},
		{"put acquire and release", []string{"put", "-acquire", "-release", "-session", "s", "k"}, "-acquire and -release cannot be used together"},
		{"put cas and acquire", []string{"put", "-cas", "-modify-index", "1", "-acquire", "-session", "s", "k"}, "-cas cannot be combined"},
		{"put bad base64", []string{"put", "-base64", "k", "%%%"}, "Cannot base64-decode data"},
		{"put missing file", []string{"put", "k", "@" + missing}, "agent kv put: Error! read " + missing},
		{"delete without key", []string{"delete"}, "agent kv delete: Error! Missing KEY argument"},
		{"delete cas without index", []string{"delete", "-cas", "k"}, "Must specify -modify-index above 0 with -cas"},
		{"delete cas index 0", []string{"delete", "-cas", "-modify-index", "0", "k"}, "Must specify -modify-index above 0 with -cas"},
		{"delete cas and recurse", []string{"delete", "-cas", "-modify-index", "3", "-recurse", "k"}, "Cannot specify both -cas and -recurse"},
		{"delete index without cas", []string{"delete", "-modify-index", "3", "k"}, "Cannot specify -modify-index without -cas"},
		{"export two prefixes", []string{"export", "a", "b"}, "Too many arguments"},
		{"import without data", []string{"import"}, "agent kv import: Error! Missing DATA argument"},
		{"import empty data", []string{"import", ""}, "Error! Empty DATA argument"},
		{"import malformed JSON", []string{"import", `[{"key": "a",`}, "cannot parse the data as a JSON array"},
		{"import object", []string{"import", `{"key":"a","value":""}`}, "cannot parse the data as a JSON array"},
		{"import bad base64", []string{"import", `[{"key":"a","flags":0,"value":"MQ=="},{"key":"b","flags":0,"value":"!!"}]`}, "entry 1 (key b): value is not valid base64"},
		{"import empty key", []string{"import", `[{"key":"","flags":0,"value":""}]`}, "entry 0: missing key"},
		{"import bad flags", []string{"import", `[{"key":"a","flags":-1,"value":""}]`}, "cannot parse the data"},
		{"import missing file", []string{"import", "@" + missing}, "Error! read " + missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runKV(t, f, "", tc.args[0], tc.args[1:]...)
			if code != 1 {
				t.Errorf("exit %d, want 1 (stdout %q)", code, out)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", errs, tc.want)
			}
		})
	}
	// None of the bad imports and puts wrote anything.
	if got := f.keys(); len(got) != 1 {
		t.Errorf("keys after bad inputs = %v, want [exists]", got)
	}
}

func TestKVDispatchAndHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"kv"}, code: 1, stderr: "Subcommands:"},
		{args: []string{"kv", "-h"}, code: 0, stdout: "export"},
		{args: []string{"kv", "frobnicate"}, code: 1, stderr: `agent kv: unknown subcommand "frobnicate"`},
		{args: []string{"kv", "get", "-h"}, code: 0, stderr: "agent kv get -detailed"},
		{args: []string{"kv", "put", "-h"}, code: 0, stderr: "-modify-index"},
		{args: []string{"kv", "delete", "-h"}, code: 0, stderr: "-recurse"},
		{args: []string{"kv", "export", "-h"}, code: 0, stderr: "agent kv export"},
		{args: []string{"kv", "import", "-h"}, code: 0, stderr: "-prefix"},
		{args: []string{"-h"}, code: 0, stdout: "kv "},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := realMain(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tc.code, out.String(), tc.stdout, errb.String(), tc.stderr)
			}
		})
	}
}

func TestKVAgentUnreachable(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	addr := f.addr()
	f.srv.Close()
	var out, errb bytes.Buffer
	if code := kvMain([]string{"get", "-http-addr", addr, "k"}, strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), "cannot reach the agent") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := kvMain([]string{"put", "-http-addr", "ftp://127.0.0.1:1", "k", "v"}, strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), `scheme "ftp" not supported`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestKVViaRealMain(t *testing.T) {
	t.Parallel()
	f := newFakeConsul(t)
	var out, errb bytes.Buffer
	if code := realMain([]string{"kv", "put", "-http-addr", f.addr(), "k", "hello"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := realMain([]string{"kv", "get", "-http-addr", f.addr(), "k"}, &out, &errb); code != 0 || out.String() != "hello\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
