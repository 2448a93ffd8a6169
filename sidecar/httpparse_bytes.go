package sidecar

import "strconv"

// Helpers of the L7 event loop that work on byte slices (reqHead.parse and
// respHead.parse are in httpparse.go, sharing read's rules).

// appendError appends the plain-text error response writeError sends (its
// head only to a HEAD request).
func appendError(dst []byte, code int, msg string, close, headOnly bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText[code]...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(msg)+1), 10)
	dst = append(dst, "\r\nX-Outrigger-Proxy-Error: 1\r\n"...)
	if close {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	if !headOnly {
		dst = append(dst, msg...)
		dst = append(dst, '\n')
	}
	return dst
}

// chunkScanner follows the framing of a chunked body as its bytes go by,
// in pieces of any size, with copyChunked's rules: size lines (hex, an
// optional extension after ';', OWS around the size), CRLF after each
// chunk's data, trailers up to an empty line.
type chunkScanner struct {
	st    uint8
	ext   bool // past ';' on the size line
	cr    bool // the current line began with '\r'
	szN   int
	lineN int   // bytes of the current line so far
	left  int64 // data left in the current chunk
	data  int64 // data bytes seen
	szBuf [32]byte
}

const (
	csSize = iota
	csData
	csDataEnd // the line ending a chunk's data (must be empty)
	csTrailer
	csDone
)

const maxChunkLine = 16 << 10 // as the bufio.Reader of copyChunked

func (s *chunkScanner) reset() { *s = chunkScanner{} }

// scan follows b. It returns the bytes of b that belong to the body
// (consumed; all of b unless the body ends in it), and out: with dechunk,
// the data bytes, moved to the front of b; else consumed (b passes as it
// is). done reports the end of the body.
func (s *chunkScanner) scan(b []byte, dechunk bool) (consumed, out int, done bool, err error) {
	w, i := 0, 0
	for i < len(b) && s.st != csDone {
		switch s.st {
		case csData:
			k := len(b) - i
			if int64(k) > s.left {
				k = int(s.left)
			}
			if dechunk {
				copy(b[w:], b[i:i+k])
				w += k
			}
			i += k
			s.left -= int64(k)
			s.data += int64(k)
			if s.left == 0 {
				s.st, s.lineN, s.cr = csDataEnd, 0, false
			}
		case csSize:
			c := b[i]
			i++
			if c == '\n' {
				sz := s.szBuf[:s.szN]
				if !s.ext && len(sz) > 0 && sz[len(sz)-1] == '\r' {
					sz = sz[:len(sz)-1]
				}
				sz = trimOWS(sz)
				if len(sz) == 0 || len(sz) > 15 {
					return i, w, false, errBadChunk
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
						return i, w, false, errBadChunk
					}
				}
				s.szN, s.ext, s.lineN, s.cr = 0, false, 0, false
				if n == 0 {
					s.st = csTrailer
				} else {
					s.st, s.left = csData, n
				}
				continue
			}
			s.lineN++
			if s.lineN >= maxChunkLine {
				return i, w, false, errBadChunk
			}
			if s.ext {
				continue
			}
			if c == ';' {
				s.ext = true
				continue
			}
			if s.szN == len(s.szBuf) {
				return i, w, false, errBadChunk
			}
			s.szBuf[s.szN] = c
			s.szN++
		case csDataEnd, csTrailer:
			c := b[i]
			i++
			if c == '\n' {
				empty := s.lineN == 0 || s.lineN == 1 && s.cr
				s.lineN, s.cr = 0, false
				if s.st == csDataEnd {
					if !empty {
						return i, w, false, errBadChunk
					}
					s.st = csSize
				} else if empty {
					s.st = csDone
				}
				continue
			}
			if s.lineN == 0 {
				s.cr = c == '\r'
			}
			s.lineN++
			if s.lineN >= maxChunkLine {
				return i, w, false, errBadChunk
			}
		}
	}
	if !dechunk {
		w = i
	}
	return i, w, s.st == csDone, nil
}
