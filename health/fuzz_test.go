package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseCheckDefinition: the parser never panics, fails only with
// *DefinitionError values, and what it accepts survives a round trip
// through MarshalJSON. Validate never panics either.
func FuzzParseCheckDefinition(f *testing.F) {
	for _, seed := range []string{
		`{"CheckID":"a","Name":"A","HTTP":"http://127.0.0.1/","Interval":"10s","Header":{"X":["1"]}}`,
		`{"name":"t","ttl":"30s","status":"passing","notes":"n"}`,
		`{"Name":"s","ScriptArgs":["/bin/sh","-c","exit 1"],"Interval":"1s","Timeout":"500ms"}`,
		`{"Name":"g","GRPC":"h:1/svc","GRPCUseTLS":"true","tls_skip_verify":1}`,
		`{"Name":"t","TCP":"h:1","Interval":1000000000,"FailuresBeforeCritical":"3"}`,
		`{"Name":"h","Header":[{"A":"b"}],"Args":"x","DeregisterCriticalServiceAfter":"1m"}`,
		`{"ID":"a","CheckID":"a","UDP":"","Namespace":"default"}`,
		`{"Interval":"-5s","SuccessBeforePassing":-1,"OutputMaxSize":1e3}`,
		`null`, `[]`, `{}`, `{"":""}`, `{"Name":"\u00ff\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseCheckDefinition(data)
		if err != nil {
			var de *DefinitionError
			if !errors.As(err, &de) || !errors.Is(err, ErrInvalidDefinition) {
				t.Fatalf("error %v (%T) is not a DefinitionError", err, err)
			}
			return
		}
		_ = d.Validate()
		_ = d.Type()
		out1, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %+v: %v", d, err)
		}
		d2, err := ParseCheckDefinition(out1)
		if err != nil {
			t.Fatalf("reparse of %s: %v", out1, err)
		}
		out2, err := json.Marshal(d2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out1, out2) {
			t.Fatalf("round trip changed the definition:\n%s\n%s", out1, out2)
		}
	})
}
