package template

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outrigger/outrigger/watch"
)

// Config says what a Runner renders and how.
type Config struct {
	// Templates to render; at least one.
	Templates []Spec
	// Client reaches the agent's HTTP API.
	Client *watch.Client
	// Wait batches bursts of changes (quiescence). The first render of
	// each template is not delayed.
	Wait Wait
	// Once renders each template once (when its data is there), runs the
	// commands, and returns.
	Once bool
	// Dry prints each output to Stdout ("> dest" then the content) instead
	// of writing it, and runs no command.
	Dry bool
	// Stdout receives Dry's output. If nil, os.Stdout.
	Stdout io.Writer
	// MissingTimeout is how long a template waits for missing data before
	// a warning (repeated each MissingTimeout). If zero, 60s.
	MissingTimeout time.Duration
	// CommandTimeout bounds each command. If zero, 60s.
	CommandTimeout time.Duration
	// Watch tunes the blocking queries; its Logger is replaced by Logger.
	Watch watch.Options
	// Logger receives renders, command output and problems. If nil,
	// slog.Default.
	Logger *slog.Logger
	// Env is what the env function reads. If nil, os.Getenv.
	Env func(string) string
}

// Runner renders a set of templates and keeps them current.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	tmpls []*tmplState

	// Owned by Run's goroutine.
	data     map[dep]depData
	watchers map[dep]watcher
	gen      uint64
	updates  chan update
	wg       sync.WaitGroup
}

type watcher struct {
	cancel context.CancelFunc
	gen    uint64
}

type update struct {
	d    dep
	gen  uint64
	data depData
	err  error
}

// tmplState is what the runner knows about one template.
type tmplState struct {
	t    *Template
	used map[dep]bool
	// rendered: a render with all data has happened.
	rendered bool
	// last is the destination's content as last written or read;
	// lastKnown says whether last is set.
	last      []byte
	lastKnown bool
	// due is when to render next (zero: nothing pending); first is the
	// first change of the current burst, for Wait.Max.
	due, first time.Time
	// waitingSince is when the template started waiting for missing data
	// (zero when none is missing); warned is when the last warning went.
	waitingSince, warned time.Time
	missing              []dep
}

// New parses every template and checks every command, so that a syntax
// error, an unknown function or a command that cannot run is an error
// before anything is written.
func New(cfg Config) (*Runner, error) {
	if len(cfg.Templates) == 0 {
		return nil, fmt.Errorf("template: no templates")
	}
	if cfg.Client == nil {
		return nil, fmt.Errorf("template: no client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.MissingTimeout <= 0 {
		cfg.MissingTimeout = 60 * time.Second
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 60 * time.Second
	}
	if cfg.Env == nil {
		cfg.Env = defaultEnv
	}
	cfg.Watch.Logger = cfg.Logger
	r := &Runner{cfg: cfg, log: cfg.Logger,
		data: map[dep]depData{}, watchers: map[dep]watcher{}, updates: make(chan update, 64)}
	dests := map[string]string{}
	var errs []error
	for _, sp := range cfg.Templates {
		abs, err := filepath.Abs(sp.Dest)
		if err != nil {
			errs = append(errs, fmt.Errorf("template %s: destination %q: %w", sp.Source, sp.Dest, err))
			continue
		}
		if other, dup := dests[abs]; dup {
			errs = append(errs, fmt.Errorf("template %s: destination %q is also %s's", sp.Source, sp.Dest, other))
			continue
		}
		dests[abs] = sp.Source
		if fi, err := os.Stat(sp.Dest); err == nil && !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("template %s: destination %q is not a regular file", sp.Source, sp.Dest))
			continue
		}
		t, err := parseFile(sp)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sp.Command != "" && !cfg.Dry {
			if err := checkCommand(sp.Command); err != nil {
				errs = append(errs, fmt.Errorf("template %s: command %q: %w", sp.Source, sp.Command, err))
				continue
			}
		}
		r.tmpls = append(r.tmpls, &tmplState{t: t})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Run renders until ctx ends (nil then) or, with Once, until every
// template rendered once. With Once, a render, write or command failure
// is returned; otherwise it is logged and the runner carries on.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.wg.Wait()
	}()
	if err := r.pass(ctx, r.tmpls); err != nil {
		return err
	}
	if r.cfg.Once && r.allRendered() {
		return nil
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	tick := r.cfg.MissingTimeout / 4
	tick = max(min(tick, 15*time.Second), 10*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-r.updates:
			r.apply(u)
		drain:
			for {
				select {
				case u := <-r.updates:
					r.apply(u)
				default:
					break drain
				}
			}
			r.resetTimer(timer)
		case <-timer.C:
			now := time.Now()
			var due []*tmplState
			for _, ts := range r.tmpls {
				if !ts.due.IsZero() && !ts.due.After(now) {
					due = append(due, ts)
				}
			}
			if err := r.pass(ctx, due); err != nil {
				return err
			}
			if r.cfg.Once && r.allRendered() {
				return nil
			}
			r.resetTimer(timer)
		case <-ticker.C:
			r.warnMissing(time.Now())
		}
	}
}

func (r *Runner) allRendered() bool {
	for _, ts := range r.tmpls {
		if !ts.rendered {
			return false
		}
	}
	return true
}

// apply stores a dependency's new data and schedules the templates that
// use it: at once before their first render, else after the quiescence
// wait.
func (r *Runner) apply(u update) {
	w, ok := r.watchers[u.d]
	if !ok || w.gen != u.gen {
		return // from a watcher stopped since
	}
	if u.err != nil {
		r.log.Error("template: bad answer from the agent", "dependency", u.d.String(), "err", u.err)
		return
	}
	r.data[u.d] = u.data
	now := time.Now()
	for _, ts := range r.tmpls {
		if !ts.used[u.d] {
			continue
		}
		if !ts.rendered || r.cfg.Wait.Min <= 0 {
			ts.due = now
			continue
		}
		if ts.due.IsZero() {
			ts.first = now
		}
		ts.due = now.Add(r.cfg.Wait.Min)
		if latest := ts.first.Add(r.cfg.Wait.Max); ts.due.After(latest) {
			ts.due = latest
		}
	}
}

func (r *Runner) resetTimer(t *time.Timer) {
	var next time.Time
	for _, ts := range r.tmpls {
		if !ts.due.IsZero() && (next.IsZero() || ts.due.Before(next)) {
			next = ts.due
		}
	}
	t.Stop()
	if !next.IsZero() {
		t.Reset(max(time.Until(next), 0))
	}
}

func (r *Runner) lookup(d dep) (depData, bool) {
	v, ok := r.data[d]
	return v, ok
}

// pass renders the given templates, writes changed outputs, then runs
// the commands of the changed ones (each distinct command once).
func (r *Runner) pass(ctx context.Context, list []*tmplState) error {
	var cmds []string
	var errs []error
	now := time.Now()
	for _, ts := range list {
		ts.due, ts.first = time.Time{}, time.Time{}
		out, used, missing, err := ts.t.render(r.lookup, r.cfg.Env)
		ts.used = used
		r.ensureWatchers(ctx, used)
		if len(missing) > 0 {
			if ts.waitingSince.IsZero() {
				ts.waitingSince, ts.warned = now, now
			}
			ts.missing = missing
			r.log.Debug("template: waiting for data", "template", ts.t.spec.Source, "missing", depList(missing))
			continue
		}
		ts.waitingSince, ts.missing = time.Time{}, nil
		if err != nil {
			r.log.Error("template: render failed", "template", ts.t.spec.Source, "err", err)
			errs = append(errs, err)
			continue
		}
		ts.rendered = true
		changed, err := r.output(ts, out)
		if err != nil {
			r.log.Error("template: write failed", "template", ts.t.spec.Source, "dest", ts.t.spec.Dest, "err", err)
			errs = append(errs, err)
			continue
		}
		if changed && ts.t.spec.Command != "" && !r.cfg.Dry && !containsString(cmds, ts.t.spec.Command) {
			cmds = append(cmds, ts.t.spec.Command)
		}
	}
	r.collectWatchers()
	for _, c := range cmds {
		if err := r.runCommand(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	if r.cfg.Once {
		return errors.Join(errs...)
	}
	return nil
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func depList(ds []dep) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// output writes out to the template's destination if it differs from
// what is there, reporting whether it did.
func (r *Runner) output(ts *tmplState, out []byte) (bool, error) {
	if r.cfg.Dry {
		if ts.lastKnown && bytes.Equal(ts.last, out) {
			return false, nil
		}
		ts.last, ts.lastKnown = out, true
		_, err := fmt.Fprintf(r.cfg.Stdout, "> %s\n%s", ts.t.spec.Dest, out)
		return true, err
	}
	if !ts.lastKnown {
		b, err := os.ReadFile(ts.t.spec.Dest)
		switch {
		case err == nil:
			ts.last, ts.lastKnown = b, true
		case !errors.Is(err, os.ErrNotExist):
			return false, err
		}
	}
	if ts.lastKnown && bytes.Equal(ts.last, out) {
		return false, nil
	}
	if err := writeAtomic(ts.t.spec.Dest, out); err != nil {
		return false, err
	}
	ts.last, ts.lastKnown = out, true
	r.log.Info("template: rendered", "template", ts.t.spec.Source, "dest", ts.t.spec.Dest, "bytes", len(out))
	return true, nil
}

// ensureWatchers starts a blocking-query follower for each new dependency.
func (r *Runner) ensureWatchers(ctx context.Context, used map[dep]bool) {
	for d := range used {
		if _, ok := r.watchers[d]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		r.gen++
		gen := r.gen
		r.watchers[d] = watcher{cancel: cancel, gen: gen}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.follow(wctx, d, gen)
		}()
	}
}

// follow feeds one dependency's data to the runner.
func (r *Runner) follow(ctx context.Context, d dep, gen uint64) {
	send := func(res watch.Result) {
		data, err := d.decode(res)
		select {
		case r.updates <- update{d: d, gen: gen, data: data, err: err}:
		case <-ctx.Done():
		}
	}
	if d.kind == depSelf {
		// Not a blocking endpoint: read it once.
		opts := r.cfg.Watch
		for failures := 0; ; failures++ {
			res, err := r.cfg.Client.Get(ctx, d.query().Path, nil, 0, 0)
			if err == nil {
				send(res)
				return
			}
			r.log.Warn("template: reading the agent's node name failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(opts.MinBackoff, opts.MaxBackoff, failures)):
			}
		}
	}
	_ = watch.Follow(ctx, r.cfg.Client, d.query(), r.cfg.Watch, send)
}

func backoff(lo, hi time.Duration, failures int) time.Duration {
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// collectWatchers stops following what no template uses any more.
func (r *Runner) collectWatchers() {
	for d, w := range r.watchers {
		inUse := false
		for _, ts := range r.tmpls {
			if ts.used[d] {
				inUse = true
				break
			}
		}
		if !inUse {
			w.cancel()
			delete(r.watchers, d)
			delete(r.data, d)
		}
	}
}

func (r *Runner) warnMissing(now time.Time) {
	for _, ts := range r.tmpls {
		if ts.waitingSince.IsZero() || now.Sub(ts.warned) < r.cfg.MissingTimeout {
			continue
		}
		ts.warned = now
		r.log.Warn("template: still waiting for data; nothing is written until it exists",
			"template", ts.t.spec.Source, "waiting", now.Sub(ts.waitingSince).Round(time.Second).String(),
			"missing", depList(ts.missing))
	}
}
