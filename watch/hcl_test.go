package watch

import (
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
)

// TestParseConfigFromFiles feeds ParseConfig what the config package
// keeps of real JSON and HCL files, in the shapes it documents.
func TestParseConfigFromFiles(t *testing.T) {
	hcl := `
watches = [
  { type = "key", key = "app/config", args = ["/bin/cat"] },
]
watches {
  type = "checks"
  state = "critical"
  handler_type = "http"
  http_handler_config {
    path = "http://127.0.0.1:9/hook"
    method = "PUT"
    header { "X-Token" = ["abc"] }
    timeout = "3s"
  }
}
`
	json := `{"watches": [{"type": "service", "service": "web", "tag": ["v1"], "passingonly": true, "args": ["/bin/cat"]}]}`
	for _, tc := range []struct{ name, format, data string }{{"a.hcl", "hcl", hcl}, {"b.json", "json", json}} {
		f, err := config.ParseBytes(tc.name, []byte(tc.data), tc.format)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c := config.DefaultConfig()
		f.ApplyTo(&c)
		defs, err := ParseConfig(c.Extra["watches"])
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		switch tc.format {
		case "hcl":
			if len(defs) != 2 || defs[0].Plan.Key != "app/config" || defs[1].HTTP == nil ||
				defs[1].HTTP.Header.Get("X-Token") != "abc" || defs[1].HTTP.Timeout != 3*time.Second || defs[1].HTTP.Method != "PUT" {
				t.Errorf("%s: got %+v", tc.name, defs)
			}
		case "json":
			if len(defs) != 1 || defs[0].Plan.Service != "web" || !defs[0].Plan.PassingOnly || defs[0].Plan.Tags[0] != "v1" {
				t.Errorf("%s: got %+v", tc.name, defs)
			}
		}
	}
}
