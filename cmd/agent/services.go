package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/outrigger/outrigger/catalog"
	"github.com/outrigger/outrigger/config"
)

var servicesSubcommands = map[string]subcommand{
	"register":   {"Register services with the local agent", servicesRegister},
	"deregister": {"Deregister services from the local agent", servicesDeregister},
}

const servicesDesc = "Registers and deregisters services with the local agent, like `consul services`.\n" +
	"The agent runs their checks and keeps them in the catalog until they are deregistered."

func servicesCommand(args []string, stdout, stderr io.Writer) int {
	return dispatch("services", servicesDesc, servicesSubcommands, args, os.Stdin, stdout, stderr)
}

// kvFlag is a repeatable key=value flag (Consul's -meta).
type kvFlag map[string]string

func (m *kvFlag) String() string {
	if m == nil {
		return ""
	}
	var parts []string
	for k, v := range *m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (m *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func servicesRegister(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "services register"
	fs, cf := newCommandFlags(name, stderr, helpText("agent services register [options] [FILE...]",
		"Registers one or more services with the local agent, like `consul services\n"+
			"register`: from configuration files (JSON or HCL, with a service or services\n"+
			"section, as in -config-dir) or, without files, from the flags. The agent\n"+
			"keeps a service until `agent services deregister`; it does not survive a\n"+
			"restart of the agent unless it is in -config-dir too.",
		"agent services register web.json",
		"agent services register -name web -port 8080 -tag v1",
		"agent services register -port 9090 db.hcl"))
	var (
		id, svcName, address string
		port                 int
		tags                 listFlag
		meta                 kvFlag
	)
	fs.StringVar(&id, "id", "", "ID of the service registered from flags (default: -name)")
	fs.StringVar(&svcName, "name", "", "Name of the service to register from flags")
	fs.StringVar(&address, "address", "", "Address of the service, if not the node's")
	fs.IntVar(&port, "port", 0, "Port of the service")
	fs.Var(&tags, "tag", "Tag of the service; repeatable")
	fs.Var(&meta, "meta", "`key=value` metadata of the service; repeatable")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	files := fs.Args()
	switch {
	case len(files) == 0 && svcName == "":
		return failf(stderr, name, "Service registration requires at least one argument or flags.")
	case len(files) > 0 && svcName != "":
		return failf(stderr, name, "Service registration requires arguments or -name, not both.")
	}

	var defs []*catalog.ServiceDefinition
	if len(files) == 0 {
		d := &catalog.ServiceDefinition{ID: id, Name: svcName, Address: address, Port: port,
			Tags: []string(tags), Meta: map[string]string(meta), Weights: catalog.DefaultWeights}
		d.FillDefaults()
		defs = append(defs, d)
	}
	for _, f := range files {
		fromFile, err := servicesFromFile(f)
		if err != nil {
			return failf(stderr, name, "Error: %v", err)
		}
		for _, d := range fromFile {
			// Flags fill what the file leaves out, as in Consul.
			if d.Address == "" {
				d.Address = address
			}
			if d.Port == 0 {
				d.Port = port
			}
			if id != "" && d.ID == d.Name {
				d.ID = id
			}
			d.Tags = append(d.Tags, tags...)
			if len(meta) > 0 {
				if d.Meta == nil {
					d.Meta = map[string]string{}
				}
				maps.Copy(d.Meta, meta)
			}
			d.FillDefaults()
		}
		defs = append(defs, fromFile...)
	}

	ctx, cancel := clientContext()
	defer cancel()
	for _, d := range defs {
		body, err := json.Marshal(d)
		if err != nil {
			return failf(stderr, name, "Error encoding service %q: %v", d.Name, err)
		}
		resp, err := cf.send(ctx, "PUT", "/v1/agent/service/register", nil, body)
		if err == nil && !resp.ok() {
			err = resp.err()
		}
		if err != nil {
			return failf(stderr, name, "Error registering service %q: %v", d.Name, err)
		}
		fmt.Fprintf(stdout, "Registered service: %s\n", d.Name)
	}
	return 0
}

func servicesDeregister(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const name = "services deregister"
	fs, cf := newCommandFlags(name, stderr, helpText("agent services deregister [options] [ID|FILE...]",
		"Deregisters services from the local agent, like `consul services deregister`:\n"+
			"by ID (-id, or an argument that is not a .json or .hcl file), or every\n"+
			"service of the configuration files given. This must be the agent the\n"+
			"services were registered with.",
		"agent services deregister -id web",
		"agent services deregister web",
		"agent services deregister web.json db.hcl"))
	id := fs.String("id", "", "ID of the service to deregister")
	if err := fs.Parse(args); err != nil {
		return usageExit(err)
	}
	switch {
	case fs.NArg() == 0 && *id == "":
		return failf(stderr, name, "Service deregistration requires at least one argument or -id.")
	case fs.NArg() > 0 && *id != "":
		return failf(stderr, name, "Service deregistration requires arguments or -id, not both.")
	}
	var ids []string
	if *id != "" {
		ids = append(ids, *id)
	}
	for _, arg := range fs.Args() {
		if !isServiceFile(arg) {
			ids = append(ids, arg)
			continue
		}
		defs, err := servicesFromFile(arg)
		if err != nil {
			return failf(stderr, name, "Error: %v", err)
		}
		for _, d := range defs {
			ids = append(ids, d.ID)
		}
	}
	ctx, cancel := clientContext()
	defer cancel()
	for _, sid := range ids {
		resp, err := cf.send(ctx, "PUT", "/v1/agent/service/deregister/"+sid, nil, nil)
		if err == nil && !resp.ok() {
			err = resp.err()
		}
		if err != nil {
			return failf(stderr, name, "Error deregistering service %q: %v", sid, err)
		}
		fmt.Fprintf(stdout, "Deregistered service: %s\n", sid)
	}
	return 0
}

// isServiceFile tells a file argument of `services deregister` from an ID.
func isServiceFile(arg string) bool {
	switch strings.ToLower(filepath.Ext(arg)) {
	case ".json", ".hcl":
		return true
	}
	info, err := os.Stat(arg)
	return err == nil && !info.IsDir()
}

// servicesFromFile reads the service definitions of a configuration file:
// its "service" and "services" sections (in JSON, keys in any case, as
// Consul's examples write "Service"), or, in JSON, a lone service
// definition object.
func servicesFromFile(path string) ([]*catalog.ServiceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var extra map[string]any
	if strings.EqualFold(filepath.Ext(path), ".hcl") {
		f, err := config.ParseBytes(path, data, "hcl")
		if err != nil {
			return nil, err
		}
		var c config.Config
		f.ApplyTo(&c)
		extra = c.Extra
	} else {
		if extra, err = jsonServiceSections(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	defs, err := catalog.ServicesFromConfig(extra)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(defs) == 0 {
		return nil, fmt.Errorf("%s: no service definitions found (want a \"service\" or \"services\" section)", path)
	}
	return defs, nil
}

// jsonServiceSections returns the service sections of a JSON file under
// the lowercase keys catalog.ServicesFromConfig reads.
func jsonServiceSections(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	extra := map[string]any{}
	for k, v := range top {
		switch lk := strings.ToLower(k); lk {
		case "service", "services":
			extra[lk] = v
		}
	}
	if len(extra) == 0 {
		for k := range top {
			if strings.EqualFold(k, "name") {
				extra["service"] = top // a bare definition
				break
			}
		}
	}
	return extra, nil
}
