package kvstore

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is the hclog.Logger raft and its transport log through,
// forwarding every record to a *slog.Logger. hclog's key/value arguments
// are slog's, so they pass through as they are.
type hclogAdapter struct {
	logger  *slog.Logger
	name    string
	implied []interface{}
}

func newHCLogAdapter(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{logger: l.With("logger", name), name: name}
}

// slogLevel maps hclog levels; Trace sits below slog's Debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error, hclog.Off:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...interface{}) {
	if level == hclog.Off {
		return
	}
	ctx := context.Background()
	lv := slogLevel(level)
	if !a.logger.Enabled(ctx, lv) {
		return
	}
	a.logger.Log(ctx, lv, msg, args...)
}

func (a *hclogAdapter) Trace(msg string, args ...interface{}) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...interface{}) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...interface{})  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...interface{})  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...interface{}) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.logger.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []interface{} { return a.implied }

func (a *hclogAdapter) With(args ...interface{}) hclog.Logger {
	return &hclogAdapter{
		logger:  a.logger.With(args...),
		name:    a.name,
		implied: append(append([]interface{}(nil), a.implied...), args...),
	}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	full := name
	if a.name != "" {
		full = a.name + "." + name
	}
	return a.ResetNamed(full)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	// slog cannot drop an attribute, so the new name is added beside the
	// old; readers take the last "logger".
	return &hclogAdapter{logger: a.logger.With("logger", name), name: name, implied: a.implied}
}

// SetLevel is ignored: the slog handler decides what is logged.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Error
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{a}
}

// stdWriter logs each line written by a standard library logger at Info,
// or at the level named by a leading "[ERR]", "[WARN]", "[DEBUG]" or
// "[TRACE]".
type stdWriter struct{ a *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\r\n"), []byte("\n")) {
		level := hclog.Info
		for prefix, l := range map[string]hclog.Level{"[ERR]": hclog.Error, "[ERROR]": hclog.Error, "[WARN]": hclog.Warn, "[DEBUG]": hclog.Debug, "[TRACE]": hclog.Trace, "[INFO]": hclog.Info} {
			if bytes.HasPrefix(line, []byte(prefix)) {
				level = l
				line = bytes.TrimSpace(line[len(prefix):])
				break
			}
		}
		w.a.Log(level, string(line))
	}
	return len(p), nil
}

var _ hclog.Logger = (*hclogAdapter)(nil)
