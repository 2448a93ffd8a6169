#!/usr/bin/env bash
# bench/proxy/run.sh — the sidecar proxy against HAProxy and Caddy, side by side in ONE run,
# in front of the same nginx backends on loopback, measured with wrk:
#   direct to nginx; through our proxy (bench/proxy harness: a sidecar.Manager over a static
#   catalog, one L4 and one L7 upstream listener); HAProxy tcp and http mode (nbthread =
#   our GOMAXPROCS); Caddy reverse_proxy (GOMAXPROCS the same).
# Cases: keep-alive HTTP through L4; the L7 path; a new connection per request
# (wrk -H "Connection: close"); a 1 GiB stream through L4 vs direct (curl); our RSS under load.
#
# "Ours" is by default a client agent (cmd/agent, joined to a -dev server agent) with a service whose
# sidecar has the two upstreams, registered through the HTTP API as a user would; OURS=harness runs
# the bench/proxy harness (a sidecar.Manager over a static catalog) instead.
#
# Usage: bench/proxy/run.sh   (knobs: DURATION=10 ROUNDS=2 THREADS=2 CONNS=50 PROCS=1 BASE=29000 OURS=agent KEEP=0)
# Prints a markdown table; raw output under bench/results/proxy-<UTC time>/.
# Every process it starts is stopped on exit (trap).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
PROCS=${PROCS:-1}      # GOMAXPROCS of ours and Caddy, nbthread of HAProxy
BASE=${BASE:-29000}
KEEP=${KEEP:-0}
OURS=${OURS:-agent}
STREAMS=${STREAMS:-5}  # 1 GiB downloads per system, alternating; the ratio is the median of the pairs' ratios
CMDLINE="bench/proxy/run.sh"
for vd in DURATION=10 ROUNDS=2 THREADS=2 CONNS=50 PROCS=1 BASE=29000 OURS=agent STREAMS=5; do
	v=${vd%%=*}
	[ "${!v}" != "${vd#*=}" ] && CMDLINE="$v=${!v} $CMDLINE"
done

B1=$((BASE + 101)); B2=$((BASE + 102))
OURS4=$((BASE + 1)); OURS7=$((BASE + 2))
HA4=$((BASE + 11)); HA7=$((BASE + 12)); HA4S=$((BASE + 13))
CADDY=$((BASE + 21))

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v caddy >/dev/null || need+=(caddy)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (apt-get)" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/bench/results/proxy-$stamp
mkdir -p "$out"
tmp=$(mktemp -d /tmp/proxybench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	[ "$KEEP" = 1 ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
wait_port() { # wait_port PORT: bounded poll until something listens
	for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
	echo "nothing on port $1" >&2; return 1
}

# ---------------------------------------------------------------- backends: nginx
mkdir -p "$tmp/www"
printf 'hello from nginx, a small body of some sixty bytes or so....\n' >"$tmp/www/index.html"
truncate -s 1G "$tmp/www/big"
cat >"$tmp/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp; uwsgi_temp_path $tmp; scgi_temp_path $tmp;
	server { listen 127.0.0.1:$B1 backlog=4096; root $tmp/www; }
	server { listen 127.0.0.1:$B2 backlog=4096; root $tmp/www; }
}
NGX
"$NGINX" -c "$tmp/nginx.conf" -e "$tmp/nginx-error.log" &
pids+=($!)
wait_port $B1; wait_port $B2

# ---------------------------------------------------------------- ours
if [ "$OURS" = harness ]; then
	go build -o "$tmp/proxy" ./bench/proxy
	GOMAXPROCS=$PROCS "$tmp/proxy" -l4 127.0.0.1:$OURS4 -l7 127.0.0.1:$OURS7 -backends 127.0.0.1:$B1,127.0.0.1:$B2 >"$out/ours.log" 2>&1 &
	ours_pid=$!
	pids+=($ours_pid)
else
	# A -dev server holding the catalog, and the client agent whose sidecar is measured.
	go build -o "$tmp/agent" ./cmd/agent
	SH=$((BASE + 501)); CH=$((BASE + 511))
	"$tmp/agent" run -dev -node bench-server -http-port $SH -dns-port $((BASE + 502)) -serf-port $((BASE + 503)) \
		-server-port $((BASE + 504)) >"$out/server.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SH/v1/status/leader" | grep -q : && break; sleep 0.1; done
	mkdir -p "$tmp/client"
	GOMAXPROCS=$PROCS "$tmp/agent" run -node bench-client -bind 127.0.0.1 -http-port $CH -dns-port $((BASE + 512)) \
		-serf-port $((BASE + 513)) -data-dir "$tmp/client" -retry-join 127.0.0.1:$((BASE + 503)) >"$out/ours.log" 2>&1 &
	ours_pid=$!
	pids+=($ours_pid)
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CH/v1/agent/self" >/dev/null && break; sleep 0.1; done
	for i in 1 2; do
		b=$((BASE + 100 + i))
		curl -sf -X PUT -d "{\"Name\":\"backend\",\"ID\":\"backend$i\",\"Address\":\"127.0.0.1\",\"Port\":$b}" \
			"http://127.0.0.1:$SH/v1/agent/service/register"
	done
	curl -sf -X PUT -d "{\"Name\":\"bench\",\"Port\":$B1,\"Connect\":{\"SidecarService\":{\"Port\":$((BASE + 520)),\"Proxy\":{\"Upstreams\":[
		{\"DestinationName\":\"backend\",\"LocalBindPort\":$OURS4},
		{\"DestinationName\":\"backend\",\"LocalBindPort\":$OURS7,\"Config\":{\"protocol\":\"http\"}}]}}}}" \
		"http://127.0.0.1:$CH/v1/agent/service/register"
fi
wait_port $OURS4; wait_port $OURS7

# ---------------------------------------------------------------- HAProxy
cat >"$tmp/haproxy.cfg" <<HA
global
	nbthread $PROCS
	maxconn 4096
defaults
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend ft_tcp
	bind 127.0.0.1:$HA4
	mode tcp
	default_backend bk_tcp
backend bk_tcp
	mode tcp
	balance roundrobin
	server s1 127.0.0.1:$B1
	server s2 127.0.0.1:$B2
# The stream's second HAProxy peer: tcp mode with Linux splice, as our L4 path moves bulk data.
frontend ft_tcp_splice
	bind 127.0.0.1:$HA4S
	mode tcp
	option splice-request
	option splice-response
	default_backend bk_tcp
frontend ft_http
	bind 127.0.0.1:$HA7
	mode http
	option forwardfor
	default_backend bk_http
backend bk_http
	mode http
	balance roundrobin
	server s1 127.0.0.1:$B1
	server s2 127.0.0.1:$B2
HA
"$HAPROXY" -f "$tmp/haproxy.cfg" -db >"$out/haproxy.log" 2>&1 &
ha_pid=$!
pids+=($ha_pid)
wait_port $HA4; wait_port $HA7

# ---------------------------------------------------------------- Caddy
cat >"$tmp/Caddyfile" <<CAD
{
	admin off
	auto_https off
}
:$CADDY {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$B1 127.0.0.1:$B2
}
CAD
HOME=$tmp XDG_DATA_HOME=$tmp XDG_CONFIG_HOME=$tmp GOMAXPROCS=$PROCS caddy run --config "$tmp/Caddyfile" --adapter caddyfile >"$out/caddy.log" 2>&1 &
caddy_pid=$!
pids+=($caddy_pid)
wait_port $CADDY

# ---------------------------------------------------------------- measuring
# wrk_run NAME PORT PID [extra wrk args]: appends "rps p99_us cpu_us_per_request" to $out/NAME.txt.
# PID is the proxy's process (0 for direct): its CPU time (utime+stime) over the run divided by the
# requests served is a per-request cost that the machine's other load does not distort much.
to_us() { # 1.23ms → 1230
	awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
		if (u == "us") n = n; else if (u == "ms") n = n * 1000; else if (u == "s") n = n * 1000000; printf "%.0f", n }'
}
cpu_ticks() { [ "$1" = 0 ] && echo 0 || awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ctx_switches() { [ "$1" = 0 ] && echo 0 || awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n }' /proc/"$1"/task/*/status; }
wrk_run() {
	local name=$1 port=$2 pid=$3; shift 3
	local f="$out/wrk-$name.$(date +%s%N).txt"
	local t0 t1
	t0=$(cpu_ticks "$pid")
	local c0 c1
	c0=$(ctx_switches "$pid")
	wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "http://127.0.0.1:$port/" >"$f" 2>&1
	t1=$(cpu_ticks "$pid")
	c1=$(ctx_switches "$pid")
	local rps p99 errs reqs cpu cs
	rps=$(awk '/^Requests\/sec/ { print $2 }' "$f")
	p99=$(awk '$1 == "99%" { print $2 }' "$f")
	reqs=$(awk '/requests in/ { print $1 }' "$f")
	errs=$(awk '/Non-2xx|Socket errors/ { print }' "$f" | tr '\n' ' ')
	cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz * 1e6 / n; else print 0 }')
	cs=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print 0 }')
	echo "$rps $(to_us "$p99") $cpu $cs $errs" >>"$out/$name.txt"
	log "$name: $rps req/s, p99 $p99, proxy CPU ${cpu} µs/request, $cs context switches/request $errs"
}
cpuof() { col "$1" 3 | med | awk '{ printf "%.1f", $1 }'; } # median CPU µs/request
csof() { col "$1" 4 | med | awk '{ printf "%.2f", $1 }'; }  # median context switches/request

rss_peak=0
sample_rss() { # background sampler of our RSS (kB)
	while kill -0 "$ours_pid" 2>/dev/null; do
		awk '/^VmRSS/ { print $2 }' "/proc/$ours_pid/status" 2>/dev/null >>"$out/rss.txt" || true
		sleep 0.5
	done
}
sample_rss &
sampler=$!
pids+=($sampler)

load=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $load"
for r in $(seq "$ROUNDS"); do
	log "round $r"
	wrk_run direct $B1 0
	wrk_run ours-l4 $OURS4 $ours_pid
	wrk_run haproxy-tcp $HA4 $ha_pid
	wrk_run ours-l7 $OURS7 $ours_pid
	wrk_run haproxy-http $HA7 $ha_pid
	wrk_run caddy $CADDY $caddy_pid
	wrk_run direct-close $B1 0 -H "Connection: close"
	wrk_run ours-l4-close $OURS4 $ours_pid -H "Connection: close"
	wrk_run haproxy-tcp-close $HA4 $ha_pid -H "Connection: close"
	wrk_run ours-l7-close $OURS7 $ours_pid -H "Connection: close"
	wrk_run haproxy-http-close $HA7 $ha_pid -H "Connection: close"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

stream() { # stream NAME PORT PID: "bytes/s proxy-CPU-seconds-per-GiB" of a 1 GiB download
	local s t0 t1 cpu
	t0=$(cpu_ticks "$3")
	s=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$2/big")
	t1=$(cpu_ticks "$3")
	cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
	echo "$s $cpu" >>"$out/$1.txt"
	log "$1: $(awk -v s="$s" 'BEGIN { printf "%.0f MiB/s", s / 1048576 }'), proxy CPU ${cpu} s"
}
# The file is sparse: its first read fills 1 GiB of page cache, which made the first direct
# download 3-4x slower than the others (and its pair's ratio flattering). Read it once first.
curl -s -o /dev/null "http://127.0.0.1:$B1/big"
for r in $(seq "$STREAMS"); do
	stream stream-direct $B1 0
	stream stream-ours-l4 $OURS4 $ours_pid
	stream stream-haproxy-tcp $HA4 $ha_pid
	stream stream-haproxy-splice $HA4S $ha_pid
done
col() { awk -v c="${2:-1}" '{ print $c }' "$out/$1.txt"; }
med() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'; }
median_ratio() { # median over rounds of (round's A ÷ round's B), column $3 (default 1)
	paste <(col "$1" "${3:-1}") <(col "$2" "${3:-1}") | awk '$2 > 0 { print $1 / $2 }' | med
}
pair_range() { # lowest and highest of the rounds' A ÷ B
	paste <(col "$1") <(col "$2") | awk '$2 > 0 { print $1 / $2 }' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f – %.2f", lo, hi }'
}
medval() { col "$1" "${2:-1}" | med | awk '{ printf "%.0f", $1 }'; }
median() { sort -g "$out/$1.txt" | awk '{ v[NR] = $1 } END { printf "%.0f", ((NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) / 1048576 }'; }
rss_kb=$(sort -n "$out/rss.txt" | tail -1)
hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$ours_pid/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
D=$(medval direct); O4=$(medval ours-l4); H4=$(medval haproxy-tcp); O7=$(medval ours-l7); H7=$(medval haproxy-http); C=$(medval caddy)
DC=$(medval direct-close); O4C=$(medval ours-l4-close); H4C=$(medval haproxy-tcp-close); O7C=$(medval ours-l7-close); H7C=$(medval haproxy-http-close)
Dp=$(medval direct 2); O4p=$(medval ours-l4 2); H4p=$(medval haproxy-tcp 2); O7p=$(medval ours-l7 2); H7p=$(medval haproxy-http 2)
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
# The machine's cost of a syscall (it differs between machines of this kind by 4x and moves every
# proxy's req/s): perf's getppid loop, when perf is there.
sc=$(perf bench syscall basic -l 1000000 2>/dev/null | awk '/usecs\/op/ { printf "; %.2f µs per syscall (perf bench syscall basic -l 1000000)", $1 }' || true)
{
echo "\`$CMDLINE\` (run $stamp, $(date -u '+%Y-%m-%d %H:%M') UTC; $(nproc) cores, $cpu$sc; load average $load before, $load_after after;"
echo "wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), HAProxy $("$HAPROXY" -v | head -1 | awk '{ print $3 }'), Caddy $(caddy version | awk '{ print $1 }'), $(go version | awk '{ print $3 }')."
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds (each runs every system back to back); values are medians over the rounds, ratios the median of the rounds' ratios; nginx (1 worker) serves a 61-byte file; GOMAXPROCS=$PROCS for ours and Caddy, nbthread $PROCS for HAProxy;"
if [ "$OURS" = harness ]; then echo "ours: the bench/proxy harness (sidecar.Manager over a static catalog)."; else echo "ours: a client agent (joined to a -dev server) whose service's sidecar has the two upstreams, registered through /v1/agent/service/register; its RSS is the whole agent's."; fi
echo
echo "| case | ours | peer | ratio | goal |"
echo "|---|---:|---:|---:|---|"
echo "| keep-alive HTTP via L4, req/s | $O4 | HAProxy tcp $H4 | $(median_ratio ours-l4 haproxy-tcp) | ≥ 1.0 |"
echo "| keep-alive via L4, p99 µs (direct $Dp) | $O4p | HAProxy tcp $H4p | | added p99 ≤ HAProxy's |"
echo "| L7 (http), req/s | $O7 | HAProxy http $H7 | $(median_ratio ours-l7 haproxy-http) | ≥ 0.8 |"
echo "| L7 (http), req/s | $O7 | Caddy $C | $(median_ratio ours-l7 caddy) | ≥ 3 |"
echo "| L7 p99 µs | $O7p | HAProxy http $H7p | | |"
echo "| new connection per request, L4, req/s | $O4C | HAProxy tcp $H4C | $(median_ratio ours-l4-close haproxy-tcp-close) | ≥ 1.0 |"
echo "| new connection per request, L7, req/s | $O7C | HAProxy http $H7C | $(median_ratio ours-l7-close haproxy-http-close) | ≥ 1.0 |"
echo "| 1 GiB stream via L4, MiB/s (median of $STREAMS; ratio: median of back-to-back pairs) | $(median stream-ours-l4) | direct $(median stream-direct) | $(median_ratio stream-ours-l4 stream-direct) | ≥ 0.9 |"
echo "| 1 GiB stream, pairs' ratios ours ÷ direct, lowest – highest | $(pair_range stream-ours-l4 stream-direct) | | | |"
echo "| 1 GiB stream, HAProxy tcp with splice ÷ direct (the same pairs' median) | | $(median_ratio stream-haproxy-splice stream-direct) | | |"
echo "| 1 GiB stream via L4, MiB/s | $(median stream-ours-l4) | HAProxy tcp $(median stream-haproxy-tcp) | $(median_ratio stream-ours-l4 stream-haproxy-tcp) | |"
echo "| 1 GiB stream via L4, MiB/s | $(median stream-ours-l4) | HAProxy tcp with splice $(median stream-haproxy-splice) | $(median_ratio stream-ours-l4 stream-haproxy-splice) | |"
echo "| 1 GiB stream via L4, proxy CPU seconds per GiB | $(col stream-ours-l4 2 | med) | HAProxy tcp $(col stream-haproxy-tcp 2 | med), with splice $(col stream-haproxy-splice 2 | med) | | |"
echo "| our ($OURS) RSS under that load, MiB (peak sample / VmHWM) | $((rss_kb / 1024)) / $((hwm_kb / 1024)) | | | ≤ 30 |"
echo
echo "Proxy CPU time per request (utime+stime of the proxy process over a run ÷ requests; median of the rounds; lower is better),"
echo "and the proxy's context switches per request (all its threads, voluntary and not):"
echo
echo "| case | ours µs | peer µs | peer ÷ ours | ours cs/req | peer cs/req |"
echo "|---|---:|---:|---:|---:|---:|"
row() { # row LABEL OURS PEER PEERNAME
	echo "| $1 | $(cpuof "$2") | $4 $(cpuof "$3") | $(ratio "$(cpuof "$3")" "$(cpuof "$2")") | $(csof "$2") | $(csof "$3") |"
}
row "keep-alive via L4" ours-l4 haproxy-tcp "HAProxy tcp"
row "L7" ours-l7 haproxy-http "HAProxy http"
row "L7" ours-l7 caddy "Caddy"
row "new connection per request, L4" ours-l4-close haproxy-tcp-close "HAProxy tcp"
row "new connection per request, L7" ours-l7-close haproxy-http-close "HAProxy http"
echo
echo "Direct to nginx: $D req/s keep-alive, $DC req/s with a new connection per request."
} | tee "$out/summary.md"
