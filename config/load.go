package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Load merges defaults, files, environment and flags into one Config, in
// the order the package documentation gives, and fills in the node name
// from the hostname if no source set one. It reports every problem it
// finds (unreadable or malformed files, unknown keys, values of the wrong
// type, bad environment values), one per line, and then returns a zero
// Config.
//
// Load does not validate the result: call Validate, then CheckPorts.
//
// env looks up environment variables: os.LookupEnv in the agent, a map in
// tests; if nil, os.LookupEnv is used. f must have been parsed; if f is
// nil, no flags and no files apply.
func Load(f *Flags, env func(string) (string, bool)) (Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	hostname := os.Hostname
	var flagLayer *layer
	var sources []fileSource
	c := DefaultConfig()
	if f != nil {
		if !f.fs.Parsed() {
			return Config{}, errors.New("config: Load called before the flags were parsed")
		}
		if f.Hostname != nil {
			hostname = f.Hostname
		}
		if f.dev {
			c = DevConfig()
		}
		flagLayer = f.layer()
		sources = f.sources
	}

	var errs []error
	explicit := map[string]bool{} // role-dependent keys some source set
	noteSet := func(l *layer) {
		for _, k := range []string{"leave_on_terminate", "skip_leave_on_interrupt"} {
			if l != nil && l.set[k] {
				explicit[k] = true
			}
		}
	}
	for _, src := range sources {
		paths, err := src.files()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, path := range paths {
			file, err := ParseFile(path)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			file.ApplyTo(&c)
			noteSet(file.l)
			c.ConfigFiles = append(c.ConfigFiles, path)
		}
	}

	envL, envErrs := envLayer(env)
	if err := inSource("environment", envErrs); err != nil {
		errs = append(errs, err)
	}
	envL.applyTo(&c, false)
	noteSet(envL)
	if flagLayer != nil {
		flagLayer.applyTo(&c, false)
		noteSet(flagLayer)
		svc, svcErrs := f.svc.definition()
		if err := inSource("flags", svcErrs); err != nil {
			errs = append(errs, err)
		}
		addFlagService(&c, svc)
	}
	// Consul's role defaults: a server stays in the Raft configuration when
	// stopped (a restart must not shrink the quorum), so it neither leaves
	// on SIGTERM nor on Ctrl-C unless told to. -dev is a throwaway server
	// and keeps the client behaviour.
	if c.Server && !c.Dev {
		if !explicit["leave_on_terminate"] {
			c.LeaveOnTerminate = false
		}
		if !explicit["skip_leave_on_interrupt"] {
			c.SkipLeaveOnInterrupt = true
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}

	if c.NodeName == "" {
		h, err := hostname()
		if err == nil && h == "" {
			err = errors.New("empty hostname")
		}
		if err != nil {
			return Config{}, fmt.Errorf("config: node_name: not set, and no hostname to default to: %w", err)
		}
		c.NodeName, _, _ = strings.Cut(h, ".")
	}
	c.LogLevel = strings.ToLower(c.LogLevel)
	switch c.LogLevel {
	case "warning":
		c.LogLevel = "warn"
	case "err":
		c.LogLevel = "error"
	}
	return c, nil
}

// files returns the files a -config-file or -config-dir argument names. A
// directory contributes its *.json and *.hcl files (any case) in lexical
// order, not descending into subdirectories; a -config-file naming a
// directory is read the same way, as Consul does.
func (src fileSource) files() ([]string, error) {
	info, err := os.Stat(src.path)
	if err != nil {
		return nil, &sourceError{source: src.path, err: unwrapPath(err)}
	}
	if !info.IsDir() {
		if src.dir {
			return nil, &sourceError{source: src.path, err: errors.New("-config-dir names a file, not a directory")}
		}
		return []string{src.path}, nil
	}
	entries, err := os.ReadDir(src.path) // sorted by name
	if err != nil {
		return nil, &sourceError{source: src.path, err: unwrapPath(err)}
	}
	var paths []string
	for _, e := range entries {
		if formatOf(e.Name()) == "" {
			continue
		}
		p := filepath.Join(src.path, e.Name())
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			continue
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// unwrapPath drops the *fs.PathError wrapper, whose path the message
// already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
