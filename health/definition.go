package health

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Check types, as CheckState.Type and CheckDefinition.Type report them.
const (
	TypeHTTP   = "http"
	TypeTCP    = "tcp"
	TypeTTL    = "ttl"
	TypeGRPC   = "grpc"
	TypeScript = "script"
)

// Check statuses. Runners produce passing, warning and critical;
// maintenance belongs to the agent's maintenance mode and is never given
// by this package.
const (
	StatusPassing     = "passing"
	StatusWarning     = "warning"
	StatusCritical    = "critical"
	StatusMaintenance = "maintenance"
)

// CheckDefinition is one check as registered with the agent, in Consul's
// shape. Exactly one of HTTP, TCP, TTL, GRPC and Args says what kind of
// check it is. ParseCheckDefinition reads it from JSON; Validate checks
// it.
type CheckDefinition struct {
	// ID is unique per agent (JSON "CheckID" or "ID"). If empty, Name is
	// used.
	ID string
	// Name is required. For a check given inside a service registration,
	// FillServiceDefaults supplies Consul's default.
	Name string
	// Notes is free text for humans, reported unchanged.
	Notes string
	// ServiceID links the check to a local service; empty for node checks.
	ServiceID string
	// Token is the ACL token the check was registered with, kept for the
	// agent; not used here.
	Token string
	// Status is the initial status: passing, warning or critical. If
	// empty, critical (or, when an existing ID is re-added, the current
	// status).
	Status string

	// HTTP is an http:// or https:// URL to request.
	HTTP string
	// Method is the HTTP method. If empty, GET.
	Method string
	// Header is sent with the HTTP request. A "Host" entry sets the
	// request's Host.
	Header map[string][]string
	// Body is sent with the HTTP request.
	Body string
	// DisableRedirects makes a 3xx answer the result instead of following
	// it (Go's default of at most 10 redirects otherwise).
	DisableRedirects bool

	// TCP is a host:port to connect to.
	TCP string
	// TCPUseTLS makes the TCP check complete a TLS handshake too.
	TCPUseTLS bool

	// TTL makes a TTL check: the application reports the status through
	// Checks.Pass/Warn/Fail/Update at least this often, or the check
	// turns critical.
	TTL time.Duration

	// GRPC is "host:port" or "host:port/service": the grpc.health.v1
	// Health/Check method is called with that service name (empty for the
	// server as a whole).
	GRPC string
	// GRPCUseTLS speaks gRPC over TLS instead of plaintext HTTP/2.
	GRPCUseTLS bool

	// TLSServerName overrides the server name checked against the
	// certificate of HTTPS, TCP+TLS and gRPC+TLS checks.
	TLSServerName string
	// TLSSkipVerify skips certificate verification for those checks.
	TLSSkipVerify bool

	// Args is a command and its arguments, run directly (no shell) for a
	// script check (JSON "Args" or "ScriptArgs").
	Args []string

	// Interval is the time between the end of one run and the start of
	// the next. Required for all checks but TTL; below MinInterval it is
	// raised to MinInterval when the check is added.
	Interval time.Duration
	// Timeout bounds one run. If zero, DefaultTimeout (10s).
	Timeout time.Duration
	// OutputMaxSize lowers Config.OutputMaxSize for this check. If zero,
	// Config.OutputMaxSize.
	OutputMaxSize int

	// SuccessBeforePassing is how many passing (or warning) results in a
	// row it takes to leave critical. 0 and 1 both mean the first.
	SuccessBeforePassing int
	// FailuresBeforeWarning is how many failed results in a row it takes
	// to report warning, before FailuresBeforeCritical is reached. If
	// zero, FailuresBeforeCritical.
	FailuresBeforeWarning int
	// FailuresBeforeCritical is how many failed results in a row it takes
	// to turn critical. 0 and 1 both mean the first.
	FailuresBeforeCritical int

	// DeregisterCriticalServiceAfter, if set, asks for the check's service
	// to be deregistered once the check has been critical this long (see
	// Config.OnDeregister). Below MinDeregisterCriticalServiceAfter it is
	// raised to that minimum when the check is added.
	DeregisterCriticalServiceAfter time.Duration
}

// Type reports the check's kind (TypeHTTP, TypeTCP, TypeTTL, TypeGRPC or
// TypeScript), or "" when the definition sets none or several.
func (d *CheckDefinition) Type() string {
	kinds := d.kinds()
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0].typ
}

type kind struct{ field, typ string }

func (d *CheckDefinition) kinds() []kind {
	var ks []kind
	if d.HTTP != "" {
		ks = append(ks, kind{"HTTP", TypeHTTP})
	}
	if d.TCP != "" {
		ks = append(ks, kind{"TCP", TypeTCP})
	}
	if d.TTL != 0 {
		ks = append(ks, kind{"TTL", TypeTTL})
	}
	if d.GRPC != "" {
		ks = append(ks, kind{"GRPC", TypeGRPC})
	}
	if len(d.Args) > 0 {
		ks = append(ks, kind{"Args", TypeScript})
	}
	return ks
}

// label names the check in errors and logs.
func (d *CheckDefinition) label() string {
	if d.ID != "" {
		return d.ID
	}
	return d.Name
}

// FillServiceDefaults gives a check that came inside a service
// registration the ID, Name and ServiceID Consul gives it: ID
// "service:<serviceID>" (with ":<index+1>" appended when the service has
// several checks), Name "Service '<serviceName>' check". Fields already
// set are kept. index is the check's position and count the number of
// checks in the registration.
func (d *CheckDefinition) FillServiceDefaults(serviceID, serviceName string, index, count int) {
	if d.ID == "" {
		d.ID = "service:" + serviceID
		if count > 1 {
			d.ID += ":" + strconv.Itoa(index+1)
		}
	}
	if d.Name == "" {
		d.Name = fmt.Sprintf("Service '%s' check", serviceName)
	}
	if d.ServiceID == "" {
		d.ServiceID = serviceID
	}
}

// Validate checks the definition and returns one *DefinitionError per
// problem (joined with errors.Join), each naming the field and the bad
// value. It does not apply the minimums (an Interval of 100ms is valid and
// runs every 1s) and does not know whether script checks are enabled;
// Checks.Add does both.
func (d *CheckDefinition) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &DefinitionError{Check: d.label(), Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	if d.Name == "" {
		bad("Name", "missing")
	}
	switch d.Status {
	case "", StatusPassing, StatusWarning, StatusCritical:
	default:
		bad("Status", "%q is not passing, warning or critical", d.Status)
	}

	kinds := d.kinds()
	typ := ""
	switch len(kinds) {
	case 0:
		bad("", "no check type: set one of HTTP, TCP, TTL, GRPC or Args")
	case 1:
		typ = kinds[0].typ
	default:
		names := make([]string, len(kinds))
		for i, k := range kinds {
			names[i] = k.field
		}
		bad("", "%s are all set: a check has exactly one of HTTP, TCP, TTL, GRPC or Args", strings.Join(names, ", "))
	}

	if d.HTTP != "" {
		if u, err := url.Parse(d.HTTP); err != nil {
			bad("HTTP", "%q is not a URL: %v", d.HTTP, errors.Unwrap(err))
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("HTTP", "%q is not an http:// or https:// URL", d.HTTP)
		}
	}
	if d.Method != "" && !isToken(d.Method) {
		bad("Method", "%q is not an HTTP method", d.Method)
	}
	for name, vals := range d.Header {
		if !isToken(name) {
			bad("Header", "%q is not a valid header name", name)
		}
		for _, v := range vals {
			if strings.ContainsAny(v, "\r\n\x00") {
				bad("Header", "value of %q contains a line break or NUL", name)
				break
			}
		}
	}
	if d.HTTP == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"Method", d.Method != ""}, {"Header", len(d.Header) > 0}, {"Body", d.Body != ""}} {
			if f.set && typ != "" {
				bad(f.name, "set on a %s check; only HTTP checks send it", typ)
			}
		}
	}
	if d.TCP != "" {
		if err := checkHostPort(d.TCP); err != nil {
			bad("TCP", "%q is not host:port: %v", d.TCP, err)
		}
	}
	if d.GRPC != "" {
		addr, _ := splitGRPCTarget(d.GRPC)
		if err := checkHostPort(addr); err != nil {
			bad("GRPC", "%q is not host:port or host:port/service: %v", d.GRPC, err)
		}
	}
	if len(d.Args) > 0 && d.Args[0] == "" {
		bad("Args", "first element (the program) is empty")
	}

	if d.TTL < 0 {
		bad("TTL", "%v is negative", d.TTL)
	}
	switch {
	case d.Interval < 0:
		bad("Interval", "%v is negative", d.Interval)
	case typ == TypeTTL && d.Interval != 0:
		bad("Interval", "%v set on a TTL check; the TTL is its deadline", d.Interval)
	case typ != "" && typ != TypeTTL && d.Interval == 0:
		bad("Interval", "missing (required for %s checks)", typ)
	}
	if d.Timeout < 0 {
		bad("Timeout", "%v is negative", d.Timeout)
	}
	if d.OutputMaxSize < 0 {
		bad("OutputMaxSize", "%d is negative", d.OutputMaxSize)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"SuccessBeforePassing", d.SuccessBeforePassing},
		{"FailuresBeforeWarning", d.FailuresBeforeWarning},
		{"FailuresBeforeCritical", d.FailuresBeforeCritical},
	} {
		if f.v < 0 {
			bad(f.name, "%d is negative", f.v)
		}
	}
	if d.FailuresBeforeWarning > max(d.FailuresBeforeCritical, 1) {
		bad("FailuresBeforeWarning", "%d is greater than FailuresBeforeCritical (%d)", d.FailuresBeforeWarning, d.FailuresBeforeCritical)
	}
	if d.DeregisterCriticalServiceAfter < 0 {
		bad("DeregisterCriticalServiceAfter", "%v is negative", d.DeregisterCriticalServiceAfter)
	}
	return errors.Join(errs...)
}

// normalized returns the definition as it runs: defaults filled in,
// minimums applied, maps and slices copied. notes lists the adjustments
// worth a warning.
func (d CheckDefinition) normalized() (_ CheckDefinition, notes []string) {
	if d.ID == "" {
		d.ID = d.Name
	}
	if d.Type() != TypeTTL {
		if d.Interval < MinInterval {
			notes = append(notes, fmt.Sprintf("Interval %v is below the minimum, using %v", d.Interval, MinInterval))
			d.Interval = MinInterval
		}
		if d.Timeout == 0 {
			d.Timeout = DefaultTimeout
		}
	}
	if d.DeregisterCriticalServiceAfter > 0 && d.DeregisterCriticalServiceAfter < MinDeregisterCriticalServiceAfter {
		notes = append(notes, fmt.Sprintf("DeregisterCriticalServiceAfter %v is below the minimum, using %v",
			d.DeregisterCriticalServiceAfter, MinDeregisterCriticalServiceAfter))
		d.DeregisterCriticalServiceAfter = MinDeregisterCriticalServiceAfter
	}
	d.Header = cloneHeader(d.Header)
	d.Args = append([]string(nil), d.Args...)
	return d, notes
}

func cloneHeader(h map[string][]string) map[string][]string {
	if h == nil {
		return nil
	}
	c := make(map[string][]string, len(h))
	for k, v := range h {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// splitGRPCTarget splits Consul's "host:port/service" gRPC target.
func splitGRPCTarget(target string) (addr, service string) {
	addr, service, _ = strings.Cut(target, "/")
	return addr, service
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if host == "" {
		return errors.New("empty host")
	}
	if port == "" {
		return errors.New("empty port")
	}
	if n, err := strconv.Atoi(port); err == nil && (n < 1 || n > 65535) {
		return fmt.Errorf("port %d out of range 1-65535", n)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
