package sidecar

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// A lean HTTP/1.1 head parser for the L7 hot path: heads are read with
// bufio.Reader.ReadSlice and copied once into a reused buffer, rewritten
// for the next hop as they are read (hop-by-hop headers dropped), with the
// few headers the proxy needs remembered as spans of that buffer.

const (
	maxHeadBytes   = 64 << 10
	maxHeaderCount = 200
)

var (
	errHeadTooLarge = errors.New("request head too large")
	errBadRequest   = errors.New("malformed HTTP head")
	errH2Preface    = errors.New("HTTP/2 preface")
	errBadChunk     = errors.New("malformed chunked body")
)

type span struct{ s, e int32 }

type header struct{ name, value span }

// reqHead is a parsed request head. buf holds the head as it goes upstream,
// without the proxy's own headers and the final CRLF.
type reqHead struct {
	buf           []byte
	method        span
	uri           span
	path          span // uri up to '?'
	host          span
	hdrs          []header
	contentLength int64 // -1: none
	chunked       bool
	close         bool // the client wants the connection closed after
	http10        bool
	upgrade       bool // Connection: upgrade with an Upgrade header
	expect        bool // Expect: 100-continue (answered by the proxy)
	xff           []byte
	hasXFP        bool
	raw           int // bytes read from the client for the head
}

func (r *reqHead) get(s span) []byte { return r.buf[s.s:s.e] }

// headerValue returns the first value of a header, or nil.
func (r *reqHead) headerValue(name string) []byte {
	for _, h := range r.hdrs {
		if eqFold(r.buf[h.name.s:h.name.e], name) {
			return r.buf[h.value.s:h.value.e]
		}
	}
	return nil
}

func (r *reqHead) hasBody() bool { return r.chunked || r.contentLength > 0 }

func (r *reqHead) isHead() bool { return string(r.get(r.method)) == "HEAD" }

// idempotent: requests that may be sent twice (RFC 9110 9.2.2).
func (r *reqHead) idempotent() bool {
	switch string(r.get(r.method)) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// readLine returns one line without its CRLF; valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errHeadTooLarge
		}
		return nil, err
	}
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return line[:n], nil
}

// lineSrc gives head lines from a bufio.Reader (br set) or from a byte
// slice (b[off:]; errIncomplete when no complete line is left).
type lineSrc struct {
	br  *bufio.Reader
	b   []byte
	off int
}

func (s *lineSrc) next() ([]byte, error) {
	if s.br != nil {
		return readLine(s.br)
	}
	rest := s.b[s.off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		if len(rest) >= 16<<10 {
			return nil, errHeadTooLarge // as a bufio.Reader of 16 KiB
		}
		return nil, errIncomplete
	}
	if i >= 16<<10 {
		return nil, errHeadTooLarge
	}
	s.off += i + 1
	n := i
	if n > 0 && rest[n-1] == '\r' {
		n--
	}
	return rest[:n], nil
}

// errIncomplete: the bytes end before the head does (parse only).
var errIncomplete = errors.New("incomplete head")

func (r *reqHead) read(br *bufio.Reader) error {
	src := lineSrc{br: br}
	return r.readFrom(&src)
}

// parse parses a request head from b and returns its length; errIncomplete
// when b ends before the head does. The rules are read's.
func (r *reqHead) parse(b []byte) (int, error) {
	src := lineSrc{b: b}
	err := r.readFrom(&src)
	return src.off, err
}

func (r *reqHead) readFrom(br *lineSrc) error {
	r.buf = r.buf[:0]
	r.hdrs = r.hdrs[:0]
	r.contentLength = -1
	r.chunked, r.close, r.http10, r.upgrade, r.expect, r.hasXFP = false, false, false, false, false, false
	r.xff = r.xff[:0]
	r.host = span{}
	r.raw = 0
	var line []byte
	var err error
	for i := 0; ; i++ {
		line, err = br.next()
		if err != nil {
			return err
		}
		if len(line) > 0 {
			break
		}
		if i > 0 { // one empty line before a request is tolerated
			return errBadRequest
		}
	}
	r.raw += len(line) + 2
	if string(line) == "PRI * HTTP/2.0" {
		return errH2Preface
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errBadRequest
	}
	rest := line[sp1+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 <= 0 {
		return errBadRequest
	}
	proto := rest[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		r.http10 = true
		r.close = true
	default:
		return errBadRequest
	}
	for _, c := range line[:sp1] {
		if c < 'A' || c > 'Z' {
			if !(c >= 'a' && c <= 'z' || c == '-' || c == '_') {
				return errBadRequest
			}
		}
	}
	uri := rest[:sp2]
	if len(uri) == 0 || bytes.IndexByte(uri, ' ') >= 0 {
		return errBadRequest
	}
	r.buf = append(r.buf, line[:sp1]...)
	r.method = span{0, int32(sp1)}
	r.buf = append(r.buf, ' ')
	us := len(r.buf)
	r.buf = append(r.buf, uri...)
	r.uri = span{int32(us), int32(len(r.buf))}
	p := uri
	if len(p) > 0 && p[0] != '/' {
		// absolute-form: http://host/path
		if i := bytes.Index(p, []byte("://")); i >= 0 {
			rest := p[i+3:]
			j := bytes.IndexByte(rest, '/')
			if j < 0 {
				p = nil
			} else {
				p = rest[j:]
			}
		}
	}
	pathStart := us + (len(uri) - len(p))
	pathEnd := pathStart + len(p)
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		pathEnd = pathStart + q
	}
	r.path = span{int32(pathStart), int32(pathEnd)}
	r.buf = append(r.buf, " HTTP/1.1\r\n"...)
	var connUpgrade, hasUpgrade, keepAlive bool
	var upgradeLine []byte
	for {
		line, err = br.next()
		if err != nil {
			if err == errHeadTooLarge || err == errIncomplete {
				return err
			}
			return errBadRequest
		}
		r.raw += len(line) + 2
		if r.raw > maxHeadBytes || len(r.hdrs) >= maxHeaderCount {
			return errHeadTooLarge
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' || line[colon-1] == ' ' || line[colon-1] == '\t' {
			return errBadRequest
		}
		name := line[:colon]
		value := trimOWS(line[colon+1:])
		switch len(name) {
		case 4:
			if eqFold(name, "host") {
				r.appendHeader(name, value)
				r.host = r.hdrs[len(r.hdrs)-1].value
				continue
			}
		case 10:
			if eqFold(name, "connection") {
				forEachToken(value, func(t []byte) {
					switch {
					case eqFold(t, "close"):
						r.close = true
					case eqFold(t, "keep-alive"):
						keepAlive = true
					case eqFold(t, "upgrade"):
						connUpgrade = true
					}
				})
				continue
			}
			if eqFold(name, "keep-alive") {
				continue
			}
		case 14:
			if eqFold(name, "content-length") {
				n, ok := parseContentLength(value)
				if !ok || (r.contentLength >= 0 && r.contentLength != n) {
					return errBadRequest
				}
				r.contentLength = n
			}
		case 17:
			if eqFold(name, "transfer-encoding") {
				if !eqFold(value, "chunked") {
					return errBadRequest // only chunked is supported on the way in
				}
				r.chunked = true
			}
			if eqFold(name, "x-forwarded-proto") {
				r.hasXFP = true
			}
		case 15:
			if eqFold(name, "x-forwarded-for") {
				if len(r.xff) > 0 {
					r.xff = append(r.xff, ", "...)
				}
				r.xff = append(r.xff, value...)
				continue
			}
		case 16:
			if eqFold(name, "proxy-connection") {
				continue
			}
		case 2:
			if eqFold(name, "te") {
				continue
			}
		case 6:
			if eqFold(name, "expect") {
				if eqFold(value, "100-continue") {
					r.expect = true
					continue
				}
			}
		case 7:
			if eqFold(name, "upgrade") {
				hasUpgrade = true
				upgradeLine = append(upgradeLine[:0], line...)
				continue
			}
		}
		r.appendHeader(name, value)
	}
	if r.chunked && r.contentLength >= 0 {
		return errBadRequest // both framings: refuse (request smuggling)
	}
	if r.host == (span{}) {
		// Sent on as HTTP/1.1, which needs a Host (empty without an
		// authority, RFC 9112 3.2).
		r.buf = append(r.buf, "Host: \r\n"...)
	}
	if r.http10 && keepAlive {
		r.close = false
	}
	if connUpgrade && hasUpgrade {
		r.upgrade = true
		r.buf = append(r.buf, upgradeLine...)
		r.buf = append(r.buf, "\r\nConnection: Upgrade\r\n"...)
	}
	return nil
}

func (r *reqHead) appendHeader(name, value []byte) {
	ns := len(r.buf)
	r.buf = append(r.buf, name...)
	ne := len(r.buf)
	r.buf = append(r.buf, ": "...)
	vs := len(r.buf)
	r.buf = append(r.buf, value...)
	ve := len(r.buf)
	r.buf = append(r.buf, "\r\n"...)
	r.hdrs = append(r.hdrs, header{span{int32(ns), int32(ne)}, span{int32(vs), int32(ve)}})
}

// respHead is a parsed response head, rewritten for the client in buf
// (without Connection headers and the final CRLF).
type respHead struct {
	buf           []byte
	status        int
	contentLength int64
	chunked       bool
	close         bool // upstream closes after (or its body ends at EOF)
	te            span // the Transfer-Encoding line in buf, CRLF included
}

func (r *respHead) read(br *bufio.Reader) (int, error) {
	src := lineSrc{br: br}
	return r.readFrom(&src)
}

// parse parses a response head from b and returns its length;
// errIncomplete when b ends before the head does. The rules are read's.
func (r *respHead) parse(b []byte) (int, error) {
	src := lineSrc{b: b}
	n, err := r.readFrom(&src)
	if err != nil {
		return n, err
	}
	return src.off, nil
}

func (r *respHead) readFrom(br *lineSrc) (int, error) {
	r.buf = r.buf[:0]
	r.contentLength = -1
	r.chunked, r.close = false, false
	r.te = span{}
	line, err := br.next()
	if err != nil {
		return 0, err
	}
	raw := len(line) + 2
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return raw, errBadRequest
	}
	is10 := line[7] == '0'
	if is10 {
		r.close = true
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 || code > 999 {
		return raw, errBadRequest
	}
	r.status = code
	r.buf = append(r.buf, "HTTP/1.1"...)
	r.buf = append(r.buf, line[8:]...)
	r.buf = append(r.buf, "\r\n"...)
	keepAlive := false
	for n := 0; ; n++ {
		line, err = br.next()
		if err != nil {
			return raw, err
		}
		raw += len(line) + 2
		if raw > maxHeadBytes || n > maxHeaderCount {
			return raw, errHeadTooLarge
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return raw, errBadRequest
		}
		name := line[:colon]
		value := trimOWS(line[colon+1:])
		switch len(name) {
		case 10:
			if eqFold(name, "connection") {
				forEachToken(value, func(t []byte) {
					if eqFold(t, "close") {
						r.close = true
					} else if eqFold(t, "keep-alive") {
						keepAlive = true
					}
				})
				continue
			}
			if eqFold(name, "keep-alive") {
				continue
			}
		case 14:
			if eqFold(name, "content-length") {
				n, ok := parseContentLength(value)
				if !ok || (r.contentLength >= 0 && r.contentLength != n) {
					return raw, errBadRequest
				}
				r.contentLength = n
			}
		case 16:
			if eqFold(name, "proxy-connection") {
				continue
			}
		case 17:
			if eqFold(name, "transfer-encoding") {
				if lastToken(value, "chunked") {
					r.chunked = true
					r.te = span{int32(len(r.buf)), int32(len(r.buf) + len(line) + 2)}
				} else {
					r.close = true // body ends at EOF
				}
			}
		}
		r.buf = append(r.buf, line...)
		r.buf = append(r.buf, "\r\n"...)
	}
	if r.chunked {
		r.contentLength = -1
	}
	if keepAlive && is10 {
		r.close = false
	}
	return raw, nil
}

// bodyless reports whether a response has no body whatever its headers say.
func bodyless(status int, head bool) bool {
	return head || status < 200 || status == 204 || status == 304
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if d >= 'A' && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func forEachToken(v []byte, f func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if t = trimOWS(t); len(t) > 0 {
			f(t)
		}
	}
}

func lastToken(v []byte, want string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return eqFold(trimOWS(v), want)
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// copyBody copies n bytes from src to dst through src's buffer.
func copyBody(dst *bufio.Writer, src *bufio.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				return done, err
			}
		}
		k := src.Buffered()
		if int64(k) > n-done {
			k = int(n - done)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return done, err
		}
		src.Discard(k)
		done += int64(k)
	}
	return done, nil
}

// copyUntilEOF copies src to dst until src ends.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	var done int64
	for {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return done, nil
				}
				return done, err
			}
		}
		b, _ := src.Peek(src.Buffered())
		if _, err := dst.Write(b); err != nil {
			return done, err
		}
		src.Discard(len(b))
		done += int64(len(b))
	}
}

// copyChunked copies a chunked body: verbatim, or decoded (dechunk, for
// HTTP/1.0 clients; trailers dropped).
func copyChunked(dst *bufio.Writer, src *bufio.Reader, dechunk bool) (int64, error) {
	var done int64
	for {
		line, err := readLine(src)
		if err != nil {
			return done, err
		}
		sz := line
		if i := bytes.IndexByte(sz, ';'); i >= 0 {
			sz = sz[:i]
		}
		sz = trimOWS(sz)
		if len(sz) == 0 || len(sz) > 15 {
			return done, errBadChunk
		}
		var n int64
		for _, c := range sz {
			switch {
			case c >= '0' && c <= '9':
				n = n<<4 | int64(c-'0')
			case c >= 'a' && c <= 'f':
				n = n<<4 | int64(c-'a'+10)
			case c >= 'A' && c <= 'F':
				n = n<<4 | int64(c-'A'+10)
			default:
				return done, errBadChunk
			}
		}
		if !dechunk {
			dst.Write(line)
			dst.WriteString("\r\n")
		}
		if n == 0 {
			// Trailers, up to the empty line.
			for {
				t, err := readLine(src)
				if err != nil {
					return done, err
				}
				if !dechunk {
					dst.Write(t)
					dst.WriteString("\r\n")
				}
				if len(t) == 0 {
					return done, nil
				}
			}
		}
		k, err := copyBody(dst, src, n)
		done += k
		if err != nil {
			return done, err
		}
		crlf, err := readLine(src)
		if err != nil {
			return done, err
		}
		if len(crlf) != 0 {
			return done, errBadChunk
		}
		if !dechunk {
			dst.WriteString("\r\n")
		}
	}
}
