package sidecar

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// parse (from bytes) and read (from a bufio.Reader of 16 KiB) agree on
// every complete head.
func checkReqParse(t *testing.T, data []byte) {
	var a, b reqHead
	n, errA := a.parse(data)
	if errA == errIncomplete {
		if n > len(data) {
			t.Fatalf("incomplete, consumed %d of %d", n, len(data))
		}
		return
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
	errB := b.read(br)
	if !errors.Is(errA, errB) && !(errA != nil && errB != nil) {
		t.Fatalf("%q: parse %v, read %v", data, errA, errB)
	}
	if errA != nil {
		if errA != errB && !(errors.Is(errA, errBadRequest) || errors.Is(errA, errHeadTooLarge) || errors.Is(errA, errH2Preface)) {
			t.Fatalf("%q: parse %v", data, errA)
		}
		return
	}
	if consumed := len(data) - br.Buffered(); consumed != n {
		t.Fatalf("%q: parse consumed %d, read %d", data, n, consumed)
	}
	if !bytes.Equal(a.buf, b.buf) || a.contentLength != b.contentLength || a.chunked != b.chunked || a.close != b.close ||
		a.http10 != b.http10 || a.upgrade != b.upgrade || a.expect != b.expect || !bytes.Equal(a.xff, b.xff) ||
		a.hasXFP != b.hasXFP || a.raw != b.raw || a.host != b.host || a.path != b.path || len(a.hdrs) != len(b.hdrs) {
		t.Fatalf("%q: parse and read differ:\n%+v\n%+v", data, a, b)
	}
}

func FuzzReqHeadParse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nPOST /x?y HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nabc",
		"GET http://h/p HTTP/1.1\nHost: b\nTransfer-Encoding: chunked\n\n",
		"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET / HTTP/1.1\r\n", "HELLO\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReqParse(t, data)
		// Every prefix is incomplete or agrees.
		if len(data) < 200 {
			for i := 0; i < len(data); i++ {
				checkReqParse(t, data[:i])
			}
		}
	})
}

func FuzzRespHeadParse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nKeep-Alive: x\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 99", "HTTP/2 200\r\n\r\n", "HTTP/1.0 100\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a, b respHead
		n, errA := a.parse(data)
		if errA == errIncomplete {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
		_, errB := b.read(br) // its count assumes CRLF line ends
		if (errA == nil) != (errB == nil) {
			t.Fatalf("%q: parse %v, read %v", data, errA, errB)
		}
		if errA != nil {
			return
		}
		if consumed := len(data) - br.Buffered(); consumed != n {
			t.Fatalf("%q: parse consumed %d, read %d", data, n, consumed)
		}
		if !bytes.Equal(a.buf, b.buf) || a.status != b.status || a.contentLength != b.contentLength || a.chunked != b.chunked || a.close != b.close || a.te != b.te {
			t.Fatalf("%q: parse and read differ:\n%+v\n%+v", data, a, b)
		}
	})
}

// scanAll runs a chunkScanner over data cut at the given points.
func scanAll(data []byte, cuts []int, dechunk bool) (consumed int, out []byte, done bool, err error) {
	var s chunkScanner
	buf := append([]byte(nil), data...)
	prev := 0
	cuts = append(cuts, len(buf))
	for _, c := range cuts {
		if c < prev || c > len(buf) {
			continue
		}
		piece := buf[prev:c]
		n, o, d, e := s.scan(piece, dechunk)
		out = append(out, piece[:o]...)
		consumed += n
		if e != nil {
			return consumed, out, false, e
		}
		if d {
			return consumed, out, true, nil
		}
		prev = c
	}
	return consumed, out, false, nil
}

// checkChunks compares the scanner with copyChunked on data, whole and cut
// at every point.
func checkChunks(t *testing.T, data []byte) {
	var dst bytes.Buffer
	bw := bufio.NewWriter(&dst)
	br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
	_, errC := copyChunked(bw, br, true)
	bw.Flush()
	consumedC := len(data) - br.Buffered()
	for cut := 0; cut <= len(data); cut++ {
		for _, dechunk := range []bool{true, false} {
			n, out, done, err := scanAll(data, []int{cut}, dechunk)
			switch {
			case errC == nil:
				if !done || err != nil || n != consumedC {
					t.Fatalf("%q cut %d: scanner done=%v err=%v consumed %d; copyChunked consumed %d", data, cut, done, err, n, consumedC)
				}
				if dechunk && !bytes.Equal(out, dst.Bytes()) {
					t.Fatalf("%q cut %d: data %q, want %q", data, cut, out, dst.Bytes())
				}
				if !dechunk && !bytes.Equal(out, data[:n]) {
					t.Fatalf("%q cut %d: passed %q", data, cut, out)
				}
			case errors.Is(errC, errBadChunk):
				if err == nil {
					t.Fatalf("%q cut %d: scanner accepts what copyChunked refuses (done=%v)", data, cut, done)
				}
			default: // io.EOF and the like: the body is cut short
				if done {
					t.Fatalf("%q cut %d: scanner done, copyChunked %v", data, cut, errC)
				}
			}
		}
	}
}

func TestChunkScannerEveryCut(t *testing.T) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nEXTRA",
		"a \r\n0123456789\n0\n\n",
		"5\r\nhelloX\r\n", "z\r\n", "0\r\n", "\r\n", "5\r\nhello\r\r\n0\r\n\r\n",
	} {
		checkChunks(t, []byte(s))
	}
}

func FuzzChunkScanner(f *testing.F) {
	for _, s := range []string{"5\r\nhello\r\n0\r\n\r\n", "3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n", "1\n\n\n0\n\n", "ffffffffffffffff\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 300 {
			return
		}
		checkChunks(t, data)
	})
}

func TestAppendErrorMatchesWriteError(t *testing.T) {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	n := writeError(bw, 503, "no healthy instance of api", true, false)
	want := "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 27\r\nX-Outrigger-Proxy-Error: 1\r\nConnection: close\r\n\r\nno healthy instance of api\n"
	if b.String() != want || n != len(want) {
		t.Fatalf("got %q (%d)", b.String(), n)
	}
}
