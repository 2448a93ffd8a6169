// Package dnsserver answers Consul's DNS names from the agent's local view
// of the catalog, over UDP and TCP, so that dig, HAProxy's server-template
// and anything else that resolves <name>.service.consul work unchanged.
//
// Names answered (case-insensitive; <domain> is Config.Domain, "consul.",
// or Config.AltDomain; [.dc] is Config.Datacenter, optional):
//
//	[tag.]name.service[.dc].<domain>  A/AAAA of the healthy instances, shuffled;
//	                                  SRV when asked for SRV
//	_name._tcp.service[.dc].<domain>  RFC 2782, no tag filter
//	_name._tag.service[.dc].<domain>  RFC 2782, with a tag filter
//	name.node[.dc].<domain>           the node's A/AAAA, and TXT "key=value" of its metadata
//	<hex-ip>.addr[.dc].<domain>       the address itself (7f000001 is 127.0.0.1; 32 digits for IPv6)
//	<domain>                          SOA, and NS ns.<domain>
//	ns.<domain>                       Config.NSAddress
//
// Behaviour where there was a choice:
//
//   - A name that does not exist gets NXDOMAIN, with the SOA in AUTHORITY
//     (its minimum is the negative TTL). So does a service with no healthy
//     instance (or none with the tag), as in Consul, and a name with another
//     datacenter: Consul forwards those to that datacenter, an Outrigger
//     cluster has one.
//   - A name that exists but has no record of the asked type gets NOERROR
//     with no answer and the SOA in AUTHORITY (NODATA). That includes the
//     empty non-terminals (service.<domain>, <dc>.<domain>,
//     _tcp.service.<domain>), so resolvers minimising query names (RFC 9156)
//     and honouring NXDOMAIN cuts (RFC 8020) still reach the names below.
//   - ANY is answered with one synthesized HINFO "RFC8482" record (RFC 8482
//     4.2) for a name that exists, never with every record set.
//   - Answers over UDP fit the client's EDNS0 buffer (512 bytes without
//     EDNS0, at most 65535-68): cut answers set TC so the client retries
//     over TCP, which returns everything up to 65535 bytes. ADDITIONAL stays
//     consistent with the kept answers: every SRV record keeps its target's
//     address.
//   - Other opcodes get NOTIMP; responses are dropped; a message without
//     exactly one question gets FORMERR; EDNS versions above 0 get BADVERS;
//     classes other than IN (and ANY) and zone transfers get NOTIMP.
//   - Names outside the domains go to Config.Recursors, one after another
//     (2s each by default); with none, they are REFUSED and RA is clear.
//
// Not here: prepared queries (.query.), Connect and ingress names, PTR
// lookups of in-addr.arpa from the catalog, DNSSEC, zone transfers.
//
// Every answer comes from the Catalog interface; the package never talks
// to the servers. The agent adapts its catalog view to it; MemCatalog is
// an in-memory Catalog for tests and examples.
package dnsserver
