package template

import (
	"strings"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"in.ctmpl:out.conf", Spec{Source: "in.ctmpl", Dest: "out.conf"}},
		{"in.ctmpl:/etc/nginx/conf.d/app.conf:nginx -s reload", Spec{"in.ctmpl", "/etc/nginx/conf.d/app.conf", "nginx -s reload"}},
		{"a:b:docker kill -s HUP web:1", Spec{"a", "b", "docker kill -s HUP web:1"}},
		{" a : b : c ", Spec{"a", "b", "c"}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err == nil {
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q: got %+v, %v", got.String(), again, err)
			}
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"in.ctmpl", "no destination"},
		{":out", "source"},
		{"in:", "destination"},
		{"in: :x", "destination"},
		{"in:out:", "command"},
		{"in:out:  ", "command"},
		{"a:a", "source itself"},
		{"a:b\n:c", "control character"},
	} {
		_, err := ParseSpec(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "-template") {
			t.Errorf("ParseSpec(%q): got %v, want an error about %q", tc.in, err, tc.want)
		}
	}
}

func TestParseWait(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Wait
	}{
		{"2s:10s", Wait{2 * time.Second, 10 * time.Second}},
		{"500ms", Wait{500 * time.Millisecond, 2 * time.Second}},
		{"0s", Wait{}},
		{"1s:1s", Wait{time.Second, time.Second}},
	} {
		got, err := ParseWait(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseWait(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"soon", "min"},
		{"1s:later", "max"},
		{"10s:1s", "less than min"},
		{"-1s", "negative"},
		{"1s:1000h", "more than"},
		{"1s:2s:3s", "max"},
	} {
		_, err := ParseWait(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "-wait") {
			t.Errorf("ParseWait(%q): got %v, want an error about %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"in.ctmpl:out.conf", "a:b:nginx -s reload", ":", "a::", "::c", "a:b:c:d", "x\x00:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "-template") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		if sp.Source == "" || sp.Dest == "" || strings.ContainsAny(sp.Source+sp.Dest+sp.Command, "\x00\r\n") {
			t.Fatalf("accepted %q as %+v", s, sp)
		}
		if strings.Contains(sp.Source, ":") || strings.Contains(sp.Dest, ":") {
			t.Fatalf("%q: a colon in source or destination: %+v", s, sp)
		}
		again, err := ParseSpec(sp.String())
		if err != nil || again != sp {
			t.Fatalf("round trip of %+v: %+v, %v", sp, again, err)
		}
	})
}

func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"2s:10s", "1s", "0", "5m:1h", "1s:", ":1s", "-1s:2s", "1e9h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseWait(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "-wait") {
				t.Fatalf("error %q does not name the flag", err)
			}
			return
		}
		if w.Min < 0 || w.Max < w.Min || w.Max > maxWait {
			t.Fatalf("ParseWait(%q) accepted %+v", s, w)
		}
	})
}
