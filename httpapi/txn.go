package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/outrigger/outrigger/kvstore"
)

// Transaction limits.
const (
	// maxTxnBody bounds a /v1/txn request body: room for one value of
	// kvstore.MaxValueSize in base64 plus the JSON around it.
	maxTxnBody = 1 << 20
	// maxTxnValueBytes bounds the values of one transaction together, as
	// Consul's txn_max_req_len does (512 KiB by default).
	maxTxnValueBytes = kvstore.MaxValueSize
)

// txnOpJSON is one element of a /v1/txn body. Only KV operations are
// supported; the others are recognised so the error can say so.
type txnOpJSON struct {
	KV      *txnKVOpJSON
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
	Session json.RawMessage
}

// txnKVOpJSON is Consul's KVTxnOp. Value is base64 (encoding/json's []byte
// decoding is the standard, padded encoding Consul uses); null or absent
// means empty.
type txnKVOpJSON struct {
	Verb    string
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64
	Session string
	// Enterprise fields, accepted when empty or "default".
	Namespace string
	Partition string
}

// txnResponseJSON is Consul's TxnResponse: Results on success (Errors
// null), Errors on a rollback (Results null).
type txnResponseJSON struct {
	Results []txnResultJSON
	Errors  []txnErrorJSON
}

type txnResultJSON struct {
	KV *kvEntryJSON
}

type txnErrorJSON struct {
	OpIndex int
	What    string
}

// decodeTxn parses and checks a /v1/txn body: a JSON array of at most
// kvstore.MaxTxnOps KV operations with known verbs. A failure is a 400
// (or 413 for size limits) naming the operation; nothing is applied.
func decodeTxn(body []byte) ([]kvstore.KVOp, *requestError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("Failed to parse body: empty body, want a JSON array of operations")
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, badRequest("Failed to parse body: want a JSON array of operations: %v", err)
	}
	if len(raw) > kvstore.MaxTxnOps {
		return nil, tooLarge("Transaction contains too many operations (%d > %d)", len(raw), kvstore.MaxTxnOps)
	}
	ops := make([]kvstore.KVOp, 0, len(raw))
	total := 0
	for i, r := range raw {
		var in txnOpJSON
		if err := json.Unmarshal(r, &in); err != nil {
			return nil, badRequest("Failed to parse operation %d: %v", i, err)
		}
		if in.KV == nil {
			for _, other := range []struct {
				name string
				v    json.RawMessage
			}{{"Node", in.Node}, {"Service", in.Service}, {"Check", in.Check}, {"Session", in.Session}} {
				if len(other.v) > 0 && string(other.v) != "null" {
					return nil, badRequest("Operation %d: %s operations are not supported: only KV operations are", i, other.name)
				}
			}
			return nil, badRequest("Operation %d: missing KV operation", i)
		}
		kv := in.KV
		for _, f := range []struct{ name, v string }{{"Namespace", kv.Namespace}, {"Partition", kv.Partition}} {
			if f.v != "" && f.v != "default" {
				return nil, badRequest("Operation %d: %s %q is not supported: only the default", i, f.name, f.v)
			}
		}
		verb := kvstore.Verb(kv.Verb)
		if !knownVerb(verb) {
			return nil, badRequest("Operation %d: unknown KV verb %q", i, kv.Verb)
		}
		if len(kv.Value) > kvstore.MaxValueSize {
			return nil, tooLarge("Value for key %q is too large (%d > %d bytes)", kv.Key, len(kv.Value), kvstore.MaxValueSize)
		}
		total += len(kv.Value)
		ops = append(ops, kvstore.KVOp{
			Verb: verb, Key: kv.Key, Value: kv.Value, Flags: kv.Flags, Index: kv.Index, Session: kv.Session,
		})
	}
	if total > maxTxnValueBytes {
		return nil, tooLarge("Cumulative size of values is too large (%d > %d bytes)", total, maxTxnValueBytes)
	}
	if err := (&kvstore.Command{Type: kvstore.CmdTxn, Ops: ops}).Validate(); err != nil {
		return nil, badRequest("Invalid transaction: %v", err)
	}
	return ops, nil
}

func knownVerb(v kvstore.Verb) bool {
	switch v {
	case kvstore.VerbSet, kvstore.VerbCAS, kvstore.VerbLock, kvstore.VerbUnlock,
		kvstore.VerbGet, kvstore.VerbGetTree, kvstore.VerbCheckIndex, kvstore.VerbCheckSession,
		kvstore.VerbCheckNotExists, kvstore.VerbDelete, kvstore.VerbDeleteTree, kvstore.VerbDeleteCAS:
		return true
	}
	return false
}

func readOnly(ops []kvstore.KVOp) bool {
	for _, op := range ops {
		if op.Verb.IsWrite() {
			return false
		}
	}
	return true
}

// txnRouteMode lets any server take a ?stale transaction; the handler
// forwards it to the leader if it turns out to write.
func txnRouteMode(r *http.Request) RouteMode {
	if _, ok := r.URL.Query()["stale"]; ok {
		return RouteAnyServer
	}
	return RouteLeader
}

// txn serves PUT /v1/txn. A read-only transaction is answered from the
// state store with the read's consistency mode (no blocking, as Consul);
// one with writes goes through Raft on the leader, all or nothing.
func (a *kvAPI) txn(w http.ResponseWriter, r *http.Request) {
	st := a.store(w, r)
	if st == nil {
		return
	}
	body, ok, err := readBody(r, maxTxnBody)
	switch {
	case err != nil:
		Error(w, http.StatusBadRequest, "reading the body: %v", err)
		return
	case !ok:
		Error(w, http.StatusRequestEntityTooLarge, "Request body too large: at most %d bytes", maxTxnBody)
		return
	}
	ops, rerr := decodeTxn(body)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}

	if readOnly(ops) {
		o, rerr := parseReadOptions(r.URL.Query())
		if rerr != nil {
			writeRequestError(w, rerr)
			return
		}
		o.index = 0 // transactions do not block
		if !a.prepareRead(w, r, st, o, watchSpec{}) {
			return
		}
		res, idx, err := st.State().ReadTxn(ops)
		if err != nil {
			a.storeError(w, r, err, body)
			return
		}
		setReadMeta(w, st, o.mode, idx)
		writeTxnResult(w, r, res)
		return
	}

	// A ?stale transaction that writes may have been routed to a
	// follower: Apply refuses it there without applying it, and
	// storeError forwards it to the leader.
	res, err := st.Apply(r.Context(), &kvstore.Command{Type: kvstore.CmdTxn, Ops: ops})
	if err != nil {
		a.storeError(w, r, err, body)
		return
	}
	setReadMeta(w, st, modeDefault, res.Index)
	writeTxnResult(w, r, res)
}

func writeTxnResult(w http.ResponseWriter, r *http.Request, res *kvstore.Result) {
	var out txnResponseJSON
	if !res.OK {
		out.Errors = make([]txnErrorJSON, len(res.Errors))
		for i, e := range res.Errors {
			out.Errors[i] = txnErrorJSON{OpIndex: e.OpIndex, What: e.What}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		writeJSON(w, r, out)
		return
	}
	out.Results = make([]txnResultJSON, len(res.Results))
	for i, e := range res.Results {
		kv := toKVJSON(e)
		out.Results[i] = txnResultJSON{KV: &kv}
	}
	writeJSON(w, r, out)
}
