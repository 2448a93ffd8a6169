package health

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The gRPC health protocol (grpc.health.v1), spoken by hand over the
// standard library's HTTP/2 so the agent needs no gRPC module for one
// unary call:
//
//	POST /grpc.health.v1.Health/Check
//	content-type: application/grpc, te: trailers
//	body: 1 byte compressed flag (0), 4 bytes big-endian length,
//	      HealthCheckRequest{string service = 1}
//	reply: the same framing around HealthCheckResponse{ServingStatus
//	      status = 1} (UNKNOWN 0, SERVING 1, NOT_SERVING 2,
//	      SERVICE_UNKNOWN 3), then trailers grpc-status (0 = OK) and
//	      grpc-message; a failing call may send them as headers alone.
const (
	grpcHealthPath   = "/grpc.health.v1.Health/Check"
	grpcServing      = 1
	grpcMaxResponse  = 64 << 10
	grpcFrameHeader  = 5
	grpcContentType  = "application/grpc"
	grpcStatusHeader = "Grpc-Status"
)

var grpcServingStatusNames = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

var grpcCodeNames = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
	"NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

type grpcProbe struct {
	target  string // as given, for output
	url     string
	service string
	client  *http.Client
}

func newGRPCProbe(d *CheckDefinition) *grpcProbe {
	addr, service := splitGRPCTarget(d.GRPC)
	tr := newTransport(d)
	var protos http.Protocols
	scheme := "http"
	if d.GRPCUseTLS {
		scheme = "https"
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true) // prior knowledge, as gRPC clients do
	}
	tr.Protocols = &protos
	return &grpcProbe{
		target:  d.GRPC,
		url:     scheme + "://" + addr + grpcHealthPath,
		service: service,
		client:  &http.Client{Transport: tr},
	}
}

func (p *grpcProbe) probe(ctx context.Context) result {
	status, err := p.call(ctx)
	if err != nil {
		return result{StatusCritical, fmt.Sprintf("gRPC check %s: %v", p.target, err)}
	}
	if status != grpcServing {
		return result{StatusCritical, fmt.Sprintf("gRPC check %s: serving status %s", p.target, servingStatusName(status))}
	}
	return result{StatusPassing, fmt.Sprintf("gRPC check %s: success", p.target)}
}

// call makes one Health/Check call and returns the serving status.
func (p *grpcProbe) call(ctx context.Context) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(grpcFrame(encodeHealthCheckRequest(p.service))))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", grpcContentType)
	req.Header.Set("Te", "trailers")
	req.Header.Set("User-Agent", userAgent)
	if deadline, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(deadline)))
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, grpcMaxResponse+1))
	if err != nil {
		return 0, fmt.Errorf("reading response: %w", err)
	}
	if len(body) > grpcMaxResponse {
		return 0, fmt.Errorf("response larger than %d bytes", grpcMaxResponse)
	}
	// Trailers, or headers alone for a call that failed at once.
	code := resp.Trailer.Get(grpcStatusHeader)
	msg := resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code = resp.Header.Get(grpcStatusHeader)
		msg = resp.Header.Get("Grpc-Message")
	}
	if code == "" {
		return 0, errors.New("no grpc-status in the response (not a gRPC server?)")
	}
	if code != "0" {
		if m, err := url.PathUnescape(msg); err == nil {
			msg = m
		}
		return 0, fmt.Errorf("rpc error: code = %s desc = %s", grpcCodeName(code), msg)
	}
	payload, err := grpcUnframe(body)
	if err != nil {
		return 0, err
	}
	return decodeHealthCheckResponse(payload)
}

func grpcFrame(msg []byte) []byte {
	b := make([]byte, grpcFrameHeader+len(msg))
	binary.BigEndian.PutUint32(b[1:grpcFrameHeader], uint32(len(msg)))
	copy(b[grpcFrameHeader:], msg)
	return b
}

func grpcUnframe(b []byte) ([]byte, error) {
	if len(b) < grpcFrameHeader {
		return nil, fmt.Errorf("response message truncated: %d bytes", len(b))
	}
	if b[0] != 0 {
		return nil, errors.New("response message is compressed, which was not asked for")
	}
	n := binary.BigEndian.Uint32(b[1:grpcFrameHeader])
	if uint64(len(b)-grpcFrameHeader) < uint64(n) {
		return nil, fmt.Errorf("response message truncated: %d of %d bytes", len(b)-grpcFrameHeader, n)
	}
	return b[grpcFrameHeader : grpcFrameHeader+int(n)], nil
}

// encodeHealthCheckRequest encodes HealthCheckRequest{service}: field 1,
// wire type 2 (length-delimited), left out when empty as proto3 does.
func encodeHealthCheckRequest(service string) []byte {
	if service == "" {
		return nil
	}
	b := []byte{1<<3 | 2}
	b = binary.AppendUvarint(b, uint64(len(service)))
	return append(b, service...)
}

// decodeHealthCheckResponse reads field 1 (the status varint) of a
// HealthCheckResponse, skipping fields it does not know. A missing field
// is 0, UNKNOWN.
func decodeHealthCheckResponse(b []byte) (uint64, error) {
	var status uint64
	bad := errors.New("malformed HealthCheckResponse")
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad
		}
		b = b[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return 0, bad
			}
			b = b[n:]
			if key>>3 == 1 {
				status = v
			}
		case 1: // 64-bit
			if len(b) < 8 {
				return 0, bad
			}
			b = b[8:]
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return 0, bad
			}
			b = b[n+int(l):]
		case 5: // 32-bit
			if len(b) < 4 {
				return 0, bad
			}
			b = b[4:]
		default:
			return 0, bad
		}
	}
	return status, nil
}

// grpcTimeout formats the grpc-timeout header (at most 8 digits and a
// unit), so the server gives up when the check does.
func grpcTimeout(d time.Duration) string {
	ms := max(d.Milliseconds(), 1)
	if ms < 1e8 {
		return strconv.FormatInt(ms, 10) + "m"
	}
	return strconv.FormatInt(min(int64(d/time.Second), 1e8-1), 10) + "S"
}

func grpcCodeName(code string) string {
	if n, err := strconv.Atoi(code); err == nil && n >= 0 && n < len(grpcCodeNames) {
		return grpcCodeNames[n]
	}
	return "Code(" + code + ")"
}

func servingStatusName(s uint64) string {
	if name, ok := grpcServingStatusNames[s]; ok {
		return name
	}
	return "ServingStatus(" + strconv.FormatUint(s, 10) + ")"
}
