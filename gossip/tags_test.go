package gossip

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, tags := range []map[string]string{
		nil,
		{TagRole: "consul", TagDatacenter: "dc1", TagServerPort: "8300", TagID: "0f0e3ac6-9a2b-4b1b-8d2f-5f0a7a3c2e11",
			TagBuild: "0.1.0", TagVersion: "1", TagHTTPPort: "8500", TagDNSPort: "8600", TagBootstrap: "3"},
		{"k": ""},
		{"ünïcode": "välue\x00with nul", strings.Repeat("k", 200): strings.Repeat("v", 200)},
	} {
		b, err := encodeMeta(42, tags)
		if err != nil {
			t.Fatalf("encode %v: %v", tags, err)
		}
		runID, got, err := decodeMeta(b)
		if err != nil || runID != 42 || !maps.Equal(got, tags) {
			t.Errorf("round trip of %v: %d %v %v", tags, runID, got, err)
		}
	}
}

func TestMetaIsCompact(t *testing.T) {
	tags := map[string]string{TagRole: "consul", TagDatacenter: "dc1", TagServerPort: "8300",
		TagID: "0f0e3ac6-9a2b-4b1b-8d2f-5f0a7a3c2e11", TagBuild: "0.1.0", TagVersion: "1",
		TagHTTPPort: "8500", TagDNSPort: "8600", TagBootstrap: "3"}
	b, _ := encodeMeta(1, tags)
	if len(b) > 130 {
		t.Errorf("a server's tags take %d bytes, want <= 130", len(b))
	}
}

func TestMetaLimit(t *testing.T) {
	// 9 header bytes + 1+1 key + 2+v value bytes = 512 fits exactly.
	fits := map[string]string{"k": strings.Repeat("v", 512-9-2-2)}
	if _, err := encodeMeta(1, fits); err != nil {
		t.Errorf("512 bytes: %v", err)
	}
	fits["k"] += "v"
	if _, err := encodeMeta(1, fits); !errors.Is(err, ErrTagsTooLarge) || err.Error() != "encoded size 513 bytes, limit 512" {
		t.Errorf("513 bytes: %v", err)
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	good, _ := encodeMeta(7, map[string]string{"a": "1", "b": "2"})
	tests := map[string][]byte{
		"version":        append([]byte{2}, good[1:]...),
		"short header":   good[:5],
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 1),
		"out of order":   append(append([]byte{}, good[:9]...), 1, 'b', 1, '2', 1, 'a', 1, '1'),
		"repeated key":   append(append([]byte{}, good[:9]...), 1, 'a', 1, '1', 1, 'a', 1, '1'),
		"empty key":      append(append([]byte{}, good[:9]...), 0, 1, '1'),
		"non-minimal":    append(append([]byte{}, good[:9]...), 0x81, 0x00, 'a', 1, '1'),
		"huge length":    append(append([]byte{}, good[:9]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"varint overrun": append(append([]byte{}, good[:9]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	}
	for name, b := range tests {
		if _, _, err := decodeMeta(b); !errors.Is(err, ErrMalformedTags) {
			t.Errorf("%s: %v, want ErrMalformedTags", name, err)
		}
	}
	if runID, tags, err := decodeMeta(nil); runID != 0 || tags != nil || err != nil {
		t.Errorf("empty metadata: %d %v %v", runID, tags, err)
	}
}

// FuzzDecodeTags checks that node metadata from the network never panics
// the decoder and that whatever it accepts re-encodes to the same bytes.
func FuzzDecodeTags(f *testing.F) {
	seed, _ := encodeMeta(3, map[string]string{TagRole: "node", TagDatacenter: "dc1", TagHTTPPort: "8500"})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		runID, tags, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedTags) {
				t.Fatalf("error %v does not wrap ErrMalformedTags", err)
			}
			return
		}
		if len(b) == 0 {
			return
		}
		again, err := encodeMeta(runID, tags)
		if err != nil {
			if len(b) > metaMaxSize && errors.Is(err, ErrTagsTooLarge) {
				return // valid encoding, just bigger than memberlist allows
			}
			t.Fatalf("re-encode %v: %v", tags, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}
