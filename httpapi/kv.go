package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/outrigger/outrigger/kvstore"
)

// kvEntryJSON is Consul's DirEntry as /v1/kv and /v1/txn return it.
type kvEntryJSON struct {
	LockIndex uint64
	Key       string
	Flags     uint64
	// Value is base64 in JSON; null when empty.
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

func toKVJSON(e *kvstore.Entry) kvEntryJSON {
	v := e.Value
	if len(v) == 0 {
		v = nil
	}
	return kvEntryJSON{
		LockIndex: e.LockIndex, Key: e.Key, Flags: e.Flags, Value: v, Session: e.Session,
		CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex,
	}
}

// kvRequest is a /v1/kv request's key and query parameters, parsed and
// checked.
type kvRequest struct {
	key string
	// GET
	read      readOptions
	recurse   bool
	keys      bool
	raw       bool
	separator string
	// PUT and DELETE: the operation, without the value.
	op kvstore.KVOp
}

// parseKVRequest parses a /v1/kv request: the key (the path after
// /v1/kv/, leading slashes dropped) and the parameters the method uses.
// Parameters are flags when present, whatever their value, as in Consul.
func parseKVRequest(method, key string, q url.Values) (kvRequest, *requestError) {
	kr := kvRequest{key: strings.TrimLeft(key, "/")}
	if err := checkKey(kr.key); err != nil {
		return kr, err
	}
	has := func(name string) bool { _, ok := q[name]; return ok }
	switch method {
	case http.MethodGet, http.MethodHead:
		read, err := parseReadOptions(q)
		if err != nil {
			return kr, err
		}
		kr.read = read
		kr.keys = has("keys")
		kr.recurse = has("recurse") || kr.keys
		kr.raw = has("raw")
		// Consul accepts its historical misspelling too.
		kr.separator = q.Get("seperator")
		if has("separator") {
			kr.separator = q.Get("separator")
		}
		if kr.key == "" && !kr.recurse {
			return kr, badRequest("Missing key name")
		}

	case http.MethodPut:
		if kr.key == "" {
			return kr, badRequest("Missing key name")
		}
		if n := countPresent(q, "cas", "acquire", "release"); n > 1 {
			return kr, badRequest("Conflicting flags: give at most one of ?cas, ?acquire and ?release")
		}
		kr.op = kvstore.KVOp{Verb: kvstore.VerbSet, Key: kr.key}
		if v := q.Get("flags"); v != "" {
			f, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return kr, badRequest("Invalid flags %q: want an unsigned 64-bit integer", v)
			}
			kr.op.Flags = f
		}
		switch {
		case has("cas"):
			n, err := parseCAS(q.Get("cas"))
			if err != nil {
				return kr, err
			}
			kr.op.Verb, kr.op.Index = kvstore.VerbCAS, n
		case has("acquire"):
			if kr.op.Session = q.Get("acquire"); kr.op.Session == "" {
				return kr, badRequest("Missing session ID: ?acquire=<session>")
			}
			kr.op.Verb = kvstore.VerbLock
		case has("release"):
			if kr.op.Session = q.Get("release"); kr.op.Session == "" {
				return kr, badRequest("Missing session ID: ?release=<session>")
			}
			kr.op.Verb = kvstore.VerbUnlock
		}

	case http.MethodDelete:
		if countPresent(q, "recurse", "cas") > 1 {
			return kr, badRequest("Conflicting flags: give at most one of ?recurse and ?cas")
		}
		kr.op = kvstore.KVOp{Verb: kvstore.VerbDelete, Key: kr.key}
		switch {
		case has("recurse"):
			kr.op.Verb = kvstore.VerbDeleteTree
		case kr.key == "":
			return kr, badRequest("Missing key name")
		case has("cas"):
			n, err := parseCAS(q.Get("cas"))
			if err != nil {
				return kr, err
			}
			kr.op.Verb, kr.op.Index = kvstore.VerbDeleteCAS, n
		}

	default:
		return kr, &requestError{code: http.StatusMethodNotAllowed, msg: "method " + method + " not allowed: use GET, PUT or DELETE"}
	}
	if kr.op.Verb != "" {
		// The store's own limits (session ID size, ...), answered early.
		if err := (&kvstore.Command{Type: kvstore.CmdKV, KV: kr.op}).Validate(); err != nil {
			return kr, badRequest("Invalid request: %v", err)
		}
	}
	return kr, nil
}

func parseCAS(v string) (uint64, *requestError) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badRequest("Invalid cas %q: want the ModifyIndex to compare with (0: only if absent)", v)
	}
	return n, nil
}

func countPresent(q url.Values, names ...string) int {
	n := 0
	for _, name := range names {
		if _, ok := q[name]; ok {
			n++
		}
	}
	return n
}

// checkKey rejects keys that no Consul client sends and that would not
// survive a round trip through a URL and JSON: invalid UTF-8 and control
// characters. Emptiness is checked per method.
func checkKey(key string) *requestError {
	if len(key) > kvstore.MaxKeySize {
		return badRequest("Key too large: %d bytes, at most %d", len(key), kvstore.MaxKeySize)
	}
	if !utf8.ValidString(key) {
		return badRequest("Invalid key %q: not valid UTF-8", key)
	}
	if i := strings.IndexFunc(key, unicode.IsControl); i >= 0 {
		return badRequest("Invalid key %q: control character at byte %d", key, i)
	}
	return nil
}

func (a *kvAPI) kvGet(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	kr, rerr := parseKVRequest(r.Method, r.PathValue("key"), r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	state := st.State()
	switch {
	case kr.keys:
		if !a.prepareRead(w, r, st, kr.read, prefixWatch(state, kr.key)) {
			return
		}
		keys, idx := state.Keys(kr.key, kr.separator)
		setReadMeta(w, st, kr.read.mode, idx)
		// Consul: the root answers an empty list, any other prefix 404.
		if len(keys) == 0 && kr.key != "" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if keys == nil {
			keys = []string{}
		}
		writeJSON(w, r, keys)

	case kr.recurse:
		if !a.prepareRead(w, r, st, kr.read, prefixWatch(state, kr.key)) {
			return
		}
		entries, idx := state.List(kr.key)
		setReadMeta(w, st, kr.read.mode, idx)
		if len(entries) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		out := make([]kvEntryJSON, len(entries))
		for i, e := range entries {
			out[i] = toKVJSON(e)
		}
		writeJSON(w, r, out)

	default:
		if !a.prepareRead(w, r, st, kr.read, keyWatch(state, kr.key)) {
			return
		}
		e, idx := state.Get(kr.key)
		setReadMeta(w, st, kr.read.mode, idx)
		if e == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if kr.raw {
			writeRaw(w, e.Value)
			return
		}
		writeJSON(w, r, []kvEntryJSON{toKVJSON(e)})
	}
}

// writeRaw writes a value as stored. The type is never sniffed: text
// that is valid UTF-8 without control characters (other than white
// space) is text/plain, anything else application/octet-stream, and
// nosniff keeps browsers from rendering a stored value as HTML.
func writeRaw(w http.ResponseWriter, v []byte) {
	ct := "text/plain; charset=utf-8"
	if !utf8.Valid(v) || strings.ContainsFunc(string(v), func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t'
	}) {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(v)))
	_, _ = w.Write(v)
}

func (a *kvAPI) kvPut(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	kr, rerr := parseKVRequest(r.Method, r.PathValue("key"), r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	body, ok, err := readBody(r, kvstore.MaxValueSize)
	switch {
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the value: %v", err)
		return
	case !ok:
		Error(w, http.StatusRequestEntityTooLarge, "Value for key %q is too large: at most %d bytes", kr.key, kvstore.MaxValueSize)
		return
	}
	op := kr.op
	op.Value = body
	res, err := st.Apply(r.Context(), &kvstore.Command{Type: kvstore.CmdKV, KV: op})
	if err != nil {
		a.storeError(w, r, err, body)
		return
	}
	writeJSON(w, r, res.OK)
}

func (a *kvAPI) kvDelete(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	kr, rerr := parseKVRequest(r.Method, r.PathValue("key"), r.URL.Query())
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	res, err := st.Apply(r.Context(), &kvstore.Command{Type: kvstore.CmdKV, KV: kr.op})
	if err != nil {
		a.storeError(w, r, err, nil)
		return
	}
	// Consul answers the comparison's outcome only for delete-cas.
	writeJSON(w, r, kr.op.Verb != kvstore.VerbDeleteCAS || res.OK)
}
