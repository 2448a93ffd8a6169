package gossip

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// Node metadata is limited to 512 bytes by memberlist and sent in every
// alive message and push/pull, so its encoding is compact:
//
//	metaVersion
//	run ID: 8 bytes, big endian (random per Gossip instance, never 0)
//	then for each tag in ascending key order:
//	  uvarint(len(key)) key uvarint(len(value)) value
//
// The run ID tells one run of an agent from the next under the same name,
// so a leave intent from a previous run cannot mark a restarted agent as
// leaving. Empty metadata (a member that is not an Outrigger agent) decodes
// to run ID 0 and no tags. The decoder is strict (sorted unique non-empty
// keys, minimal lengths, no trailing bytes) so every valid input has exactly
// one encoding, and it never trusts a length it has not checked against the
// input: the metadata comes from the network.
const metaVersion = 1

// metaMaxSize is memberlist.MetaMaxSize.
const metaMaxSize = 512

// metaHeaderLen is the version byte and the run ID.
const metaHeaderLen = 1 + 8

// encodeMeta encodes a run ID and tags; it fails if a key is empty or the
// result exceeds metaMaxSize.
func encodeMeta(runID uint64, tags map[string]string) ([]byte, error) {
	keys := slices.Sorted(maps.Keys(tags))
	size := metaHeaderLen
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("empty key")
		}
		v := tags[k]
		size += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	if size > metaMaxSize {
		return nil, tagSizeError(size)
	}
	b := make([]byte, 0, size)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, runID)
	for _, k := range keys {
		v := tags[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// checkTags reports whether tags can be encoded.
func checkTags(tags map[string]string) error {
	_, err := encodeMeta(1, tags)
	return err
}

// decodeMeta decodes node metadata. Tags are nil when there are none.
func decodeMeta(b []byte) (runID uint64, tags map[string]string, err error) {
	if len(b) == 0 {
		return 0, nil, nil
	}
	if b[0] != metaVersion {
		return 0, nil, fmt.Errorf("version %d, want %d: %w", b[0], metaVersion, ErrMalformedTags)
	}
	if len(b) < metaHeaderLen {
		return 0, nil, fmt.Errorf("%d bytes, too short for the header: %w", len(b), ErrMalformedTags)
	}
	runID = binary.BigEndian.Uint64(b[1:metaHeaderLen])
	rest := b[metaHeaderLen:]
	prev := ""
	for len(rest) > 0 {
		k, r, err := readString(rest)
		if err != nil {
			return 0, nil, fmt.Errorf("key at byte %d: %w", len(b)-len(rest), err)
		}
		v, r, err := readString(r)
		if err != nil {
			return 0, nil, fmt.Errorf("value of %q: %w", k, err)
		}
		if k == "" {
			return 0, nil, fmt.Errorf("empty key: %w", ErrMalformedTags)
		}
		if tags != nil && k <= prev {
			return 0, nil, fmt.Errorf("key %q out of order or repeated: %w", k, ErrMalformedTags)
		}
		if tags == nil {
			tags = make(map[string]string)
		}
		tags[k] = v
		prev = k
		rest = r
	}
	return runID, tags, nil
}

// readString reads uvarint(len) and that many bytes.
func readString(b []byte) (string, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return "", nil, fmt.Errorf("bad length: %w", ErrMalformedTags)
	}
	b = b[w:]
	if n > uint64(len(b)) {
		return "", nil, fmt.Errorf("length %d past end of data: %w", n, ErrMalformedTags)
	}
	if w != uvarintLen(int(n)) {
		return "", nil, fmt.Errorf("non-minimal length: %w", ErrMalformedTags)
	}
	return string(b[:n]), b[n:], nil
}

func uvarintLen(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(n))
}

// tagSizeError is an encoded size over metaMaxSize.
type tagSizeError int

func (e tagSizeError) Error() string {
	return fmt.Sprintf("encoded size %d bytes, limit %d", int(e), metaMaxSize)
}

func (e tagSizeError) Unwrap() error { return ErrTagsTooLarge }
