package watch

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"time"
)

// Query is one endpoint followed by blocking queries.
type Query struct {
	// Path is the API path, e.g. "/v1/health/service/web".
	Path string
	// Params are the query parameters besides index and wait.
	Params url.Values
}

// String is the path and parameters, for logs.
func (q Query) String() string {
	if len(q.Params) == 0 {
		return q.Path
	}
	return q.Path + "?" + q.Params.Encode()
}

// Options tune Follow. The zero value is usable.
type Options struct {
	// Wait is each blocking query's ?wait. If zero, 5 minutes (Consul's
	// default) is used.
	Wait time.Duration
	// MinBackoff is the pause after the first failed query; it doubles
	// with each failure in a row up to MaxBackoff. If zero, 1s and 30s
	// are used.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives failed queries at warn level. If nil, slog.Default.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Follow follows q with blocking queries until ctx ends, calling fn with
// the first result and then with every result whose content differs from
// the one before (a blocking query may return without a change: at the
// wait timeout, or woken by a write that left this result as it was). It
// never polls: each query carries the last X-Consul-Index. An index that
// goes backwards (a server restored from a snapshot, a new leader behind
// the old one) resets it to 0; errors back off exponentially. fn runs on
// Follow's goroutine; the next query starts when it returns. Follow
// returns ctx's error.
func Follow(ctx context.Context, c *Client, q Query, opts Options, fn func(Result)) error {
	opts = opts.withDefaults()
	var (
		index    uint64
		last     *Result
		failures int
	)
	for {
		res, err := c.Get(ctx, q.Path, q.Params, index, opts.Wait)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			pause := backoff(opts.MinBackoff, opts.MaxBackoff, failures)
			failures++
			opts.Logger.Warn("watch: query failed; retrying", "query", q.String(), "err", err, "retry_in", pause, "failures", failures)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		failures = 0
		switch {
		case res.Index < index:
			// Backwards: start over with a non-blocking read.
			index = 0
		case res.Index == 0:
			// No index at all: never block on an index below 1.
			index = 1
		default:
			index = res.Index
		}
		if last == nil || last.Found != res.Found || !bytes.Equal(last.Body, res.Body) {
			r := res
			last = &r
			fn(res)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// backoff is min·2^failures, capped at max.
func backoff(min, max time.Duration, failures int) time.Duration {
	d := min
	for i := 0; i < failures && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
