package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/scanner"
	"github.com/hashicorp/hcl/hcl/token"
)

// File is one parsed configuration file: the settings it makes, not yet
// merged with anything.
type File struct {
	// Name is the path or name the file was parsed under; errors start
	// with it.
	Name string
	l    *layer
}

// Keys returns the keys the file sets, sorted: Consul keys as in error
// messages ("ports.http") and the raw sections kept in Config.Extra.
func (f *File) Keys() []string { return f.l.keys() }

// ApplyTo merges the file onto c the way Load merges files: the keys the
// file sets replace c's, except that retry_join and the Extra lists append
// and node_meta merges by key.
func (f *File) ApplyTo(c *Config) { f.l.applyTo(c, true) }

// ParseFile reads and decodes one configuration file. The format comes
// from the extension: .json or .hcl, in any case.
func ParseFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &sourceError{source: path, err: unwrapPath(err)}
	}
	return ParseBytes(path, data, "")
}

// ParseBytes decodes one configuration file's contents. format is "json"
// or "hcl"; if empty, it comes from name's extension. name is used only in
// error messages and File.Name.
func ParseBytes(name string, data []byte, format string) (*File, error) {
	if format == "" {
		format = formatOf(name)
		if format == "" {
			return nil, &sourceError{source: name, err: &kindError{
				msg:  "cannot tell the format from the extension (want .json or .hcl)",
				kind: ErrSyntax,
			}}
		}
	}
	var tree map[string]any
	var err error
	switch format {
	case "json":
		tree, err = parseJSON(data)
	case "hcl":
		tree, err = parseHCL(data)
	default:
		err = fmt.Errorf("unknown format %s (want \"json\" or \"hcl\")", quote(format))
	}
	if err != nil {
		return nil, &sourceError{source: name, err: err}
	}
	l, errs := decodeTree(tree)
	if len(errs) > 0 {
		return nil, inSource(name, errs)
	}
	return &File{Name: name, l: l}, nil
}

// formatOf returns "json" or "hcl" from a file name's extension, or "".
func formatOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return "json"
	case ".hcl":
		return "hcl"
	}
	return ""
}

// decodeTree maps a file's top-level object onto a layer. It reports every
// problem, in key order.
func decodeTree(tree map[string]any) (*layer, []error) {
	l := newLayer()
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(tree)) {
		v := tree[k]
		if v == nil { // JSON null leaves the key unset
			continue
		}
		if _, ok := extraKeys[k]; ok {
			l.setExtra(k, v)
			continue
		}
		if slices.Contains(blocks, k) {
			obj, ok := asObject(v)
			if !ok {
				errs = append(errs, fieldErr(ErrWrongType, k, "%s is not an object", describe(v)))
				continue
			}
			for _, p := range slices.Sorted(maps.Keys(obj)) {
				key := k + "." + p
				if _, ok := fieldIndex[key]; !ok {
					errs = append(errs, &unknownKeyError{key: key, suggestion: suggest(k+".", p, blockKeys(k))})
					continue
				}
				if obj[p] == nil {
					continue
				}
				if err := l.decode(key, key, obj[p]); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		_, known := fieldIndex[k]
		switch {
		case known && !strings.Contains(k, "."):
			if err := l.decode(k, k, v); err != nil {
				errs = append(errs, err)
			}
		case known: // "ports.http" written flat at the top
			errs = append(errs, &unknownKeyError{key: k, suggestion: strings.Replace(k, ".", " ", 1)})
		default:
			errs = append(errs, &unknownKeyError{key: k, suggestion: suggest("", k, topLevelKeys)})
		}
	}
	return l, errs
}

func parseJSON(data []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonSyntaxError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &kindError{msg: "unexpected data after the top-level object", kind: ErrSyntax}
	}
	tree, ok := plain(v).(map[string]any)
	if !ok {
		return nil, &kindError{msg: fmt.Sprintf("top level is %s, want an object", describe(plain(v))), kind: ErrSyntax}
	}
	return tree, nil
}

// jsonSyntaxError gives a JSON decoding error a line and column.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		off := int(min(se.Offset, int64(len(data))))
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		col := off - bytes.LastIndexByte(data[:off], '\n')
		if col > 1 {
			col-- // Offset is just past the offending byte
		}
		return &kindError{msg: fmt.Sprintf("line %d, column %d: %v", line, col, se), kind: ErrSyntax}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &kindError{msg: "unexpected end of input", kind: ErrSyntax}
	}
	return &kindError{msg: err.Error(), kind: ErrSyntax}
}

// maxHCLDepth bounds how deeply an HCL file may nest. HCL1's parser and
// decoder recurse once per level, and a deep enough input would overflow
// the stack, which no recover can catch. Real configurations nest a
// handful of levels.
const maxHCLDepth = 100

func parseHCL(data []byte) (tree map[string]any, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]any{}, nil
	}
	// HCL1 panics on some malformed input (its token and scanner code
	// panic on "impossible" states). Turn that into an error.
	defer func() {
		if r := recover(); r != nil {
			tree, err = nil, &kindError{msg: fmt.Sprintf("cannot parse: %v", r), kind: ErrSyntax}
		}
	}()
	if hclDepth(data) > maxHCLDepth {
		return nil, &kindError{msg: fmt.Sprintf("nested more than %d levels deep", maxHCLDepth), kind: ErrSyntax}
	}
	var out map[string]any
	file, err := hcl.ParseBytes(data) // HCL, or JSON if it starts with '{', as Consul reads .hcl
	if err == nil {
		unflatten(file.Node)
		err = hcl.DecodeObject(&out, file)
	}
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) && pe.Pos.Line > 0 {
			return nil, &kindError{msg: fmt.Sprintf("line %d, column %d: %v", pe.Pos.Line, pe.Pos.Column, pe.Err), kind: ErrSyntax}
		}
		return nil, &kindError{msg: err.Error(), kind: ErrSyntax}
	}
	tree, _ = plain(out).(map[string]any)
	if tree == nil {
		tree = map[string]any{}
	}
	return tree, nil
}

// unflatten rewrites each item with several keys (`a b { }`, and what
// HCL's JSON parser flattens nested objects into) as nested single-key
// items (`a { b { } }`), which decode to the same shape. HCL's decoder
// handles a multi-key item by scanning its whole list for the first key,
// which made a file of many such items take time quadratic in its size
// (seconds for a few hundred kilobytes).
func unflatten(n ast.Node) {
	switch n := n.(type) {
	case *ast.ObjectList:
		if n == nil {
			return
		}
		for _, item := range n.Items {
			if item == nil || item.Val == nil {
				continue
			}
			unflatten(item.Val)
			for len(item.Keys) > 1 {
				last := len(item.Keys) - 1
				inner := &ast.ObjectItem{Keys: item.Keys[last:], Val: item.Val}
				item.Val = &ast.ObjectType{List: &ast.ObjectList{Items: []*ast.ObjectItem{inner}}}
				item.Keys = item.Keys[:last]
			}
		}
	case *ast.ObjectType:
		if n != nil {
			unflatten(n.List)
		}
	case *ast.ListType:
		if n != nil {
			for _, e := range n.List {
				unflatten(e)
			}
		}
	}
}

// hclDepth estimates how deeply data nests: open brackets and braces, plus
// runs of keys (`a b c { }` nests three objects). It tokenizes with HCL's
// own scanner, which does not recurse, so strings, comments and heredocs
// do not count.
func hclDepth(data []byte) int {
	s := scanner.New(data)
	s.Error = func(token.Pos, string) {} // the parser reports errors later
	depth, keys, deepest := 0, 0, 0
	for {
		tok := s.Scan()
		switch tok.Type {
		case token.EOF:
			return deepest
		case token.LBRACE, token.LBRACK:
			depth++
			keys = 0
		case token.RBRACE, token.RBRACK:
			depth--
			keys = 0
		case token.IDENT, token.STRING:
			keys++
		case token.COMMENT: // the parser skips comments, even between keys
		default:
			keys = 0
		}
		deepest = max(deepest, depth+keys)
	}
}
