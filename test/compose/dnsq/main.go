// Command dnsq is the compose tests' DNS client: the app images are FROM
// scratch and hold no dig, so the tests run dnsq in a throwaway container
// sharing an app container's network namespace (docker run --network
// container:ID) and ask the sidecar agent's DNS on 127.0.0.1:8600 from
// there, as the app itself would.
//
//	dnsq [-server 127.0.0.1:8600] [-tcp] NAME[:TYPE]...
//
// It asks for each NAME in turn (type A unless given, e.g.
// web.service.consul:SRV) and prints each answer record on a line: the
// name asked, the type, and the record's data in dig's +short form
// ("api.service.consul A 172.20.0.5"). It exits 1 on the first transport
// error or rcode other than NOERROR, naming it.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func main() {
	server := flag.String("server", "127.0.0.1:8600", "DNS server host:port")
	tcp := flag.Bool("tcp", false, "query over TCP instead of UDP")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: dnsq [-server host:port] [-tcp] NAME[:TYPE]...")
		os.Exit(2)
	}
	c := &dns.Client{Timeout: 3 * time.Second}
	if *tcp {
		c.Net = "tcp"
	}
	for _, arg := range flag.Args() {
		name, typ, _ := strings.Cut(arg, ":")
		if typ == "" {
			typ = "A"
		}
		t, ok := dns.StringToType[strings.ToUpper(typ)]
		if !ok {
			fmt.Fprintf(os.Stderr, "dnsq: %q: unknown query type %q\n", arg, typ)
			os.Exit(2)
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), t)
		r, _, err := c.Exchange(m, *server)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dnsq: %s %s @%s: %v\n", name, typ, *server, err)
			os.Exit(1)
		}
		if r.Rcode != dns.RcodeSuccess {
			fmt.Fprintf(os.Stderr, "dnsq: %s %s @%s: rcode %s\n", name, typ, *server, dns.RcodeToString[r.Rcode])
			os.Exit(1)
		}
		for _, rr := range r.Answer {
			h := rr.Header()
			fmt.Printf("%s %s %s\n", name, dns.TypeToString[h.Rrtype], strings.TrimPrefix(rr.String(), h.String()))
		}
	}
}
