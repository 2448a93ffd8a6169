#!/usr/bin/env bash
# bench/view/run.sh — cost of a client agent's local view with many services
# subscribed: a server agent and a client agent on loopback; N services
# registered in the catalog; every one asked for once through the client's
# DNS (the view is demand-driven, so each becomes a subscription); then the
# client's open fds, sockets, threads, RSS and idle CPU, the server's fds and
# RSS, and how long a change to one service takes to show in the client's DNS.
#
# Usage: bench/view/run.sh   (knobs: N=10000 BASE=27000 AGENT=bin/agent KEEP=0)
# AGENT=path runs that binary (e.g. an older build, for a before/after);
# otherwise bin/agent is built. Prints a markdown table; raw output under
# bench/results/view-<UTC time>/. Every process it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

N=${N:-10000}
BASE=${BASE:-27000}
AGENT=${AGENT:-}
KEEP=${KEEP:-0}

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (apt-get)" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "$AGENT" ]; then
	make -s build
	AGENT=$root/bin/agent
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/bench/results/view-$stamp
mkdir -p "$out"
tmp=$(mktemp -d /tmp/viewbench.XXXXXX)
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
wait_for() { # wait_for DESC SECONDS CMD...
	local desc=$1 n=$2; shift 2
	for _ in $(seq $((n * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "timed out waiting for $desc" >&2; return 1
}

# ports: server http/dns/serf/rpc BASE+1..4, client BASE+11..14
S_HTTP=$((BASE + 1)); S_DNS=$((BASE + 2)); S_SERF=$((BASE + 3)); S_RPC=$((BASE + 4))
C_HTTP=$((BASE + 11)); C_DNS=$((BASE + 12)); C_SERF=$((BASE + 13)); C_RPC=$((BASE + 14))
start_agent() { # NAME HTTP DNS SERF RPC ARGS...
	local name=$1 http=$2 dns=$3 serf=$4 rpc=$5; shift 5
	"$AGENT" run -node "$name" -bind 127.0.0.1 -http-port "$http" -dns-port "$dns" -serf-port "$serf" \
		-server-port "$rpc" -data-dir "$tmp/$name" -retry-interval 200ms -log-level warn "$@" >"$out/$name.log" 2>&1 &
	pids+=($!)
}
log "starting server s1 and client c1 ($AGENT)"
start_agent s1 $S_HTTP $S_DNS $S_SERF $S_RPC -server -bootstrap-expect 1
S_PID=${pids[-1]}
start_agent c1 $C_HTTP $C_DNS $C_SERF $C_RPC -retry-join "127.0.0.1:$S_SERF"
C_PID=${pids[-1]}
leader() { [ -n "$(curl -sf "http://127.0.0.1:$S_HTTP/v1/status/leader" | tr -d '"')" ]; }
wait_for "a leader" 60 leader
joined() { curl -sf "http://127.0.0.1:$C_HTTP/v1/catalog/nodes" | grep -q '"c1"'; }
wait_for "c1 in the catalog" 60 joined

log "registering $N services (catalog API on the server, 8 parallel curl)"
mkdir -p "$tmp/reg"
per=$(( (N + 7) / 8 ))
for w in $(seq 0 7); do
	: >"$tmp/reg/$w.cfg"
	first=1
	for i in $(seq $((w * per + 1)) $(( (w + 1) * per ))); do
		[ "$i" -le "$N" ] || break
		[ $first = 1 ] || echo "next" >>"$tmp/reg/$w.cfg"
		first=0
		printf 'url = "http://127.0.0.1:%s/v1/catalog/register"\nrequest = "PUT"\noutput = "/dev/null"\nsilent\nwrite-out = "%%{http_code}\\n"\ndata = "{\\"Node\\":\\"n%d\\",\\"Address\\":\\"10.%d.%d.1\\",\\"Service\\":{\\"Service\\":\\"svc%d\\",\\"ID\\":\\"svc%d\\",\\"Port\\":9000}}"\n' \
			"$S_HTTP" "$i" $((i / 250)) $((i % 250 + 1)) "$i" "$i" >>"$tmp/reg/$w.cfg"
	done
done
cpids=()
for w in $(seq 0 7); do curl -K "$tmp/reg/$w.cfg" >"$tmp/reg/$w.out" 2>&1 & cpids+=($!); done
for p in "${cpids[@]}"; do wait "$p" || true; done
REG_OK=$(cat "$tmp/reg/"*.out | grep -c '^200$' || true)

TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
stat_of() { # PID: "fds sockets threads rss_kB"
	echo "$(ls "/proc/$1/fd" | wc -l) $(find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l) $(awk '/^Threads/ {print $2}' "/proc/$1/status") $(awk '/^VmRSS/ {print $2}' "/proc/$1/status")"
}
read -r c0_fds c0_socks c0_thr c0_rss <<<"$(stat_of "$C_PID")"
read -r s0_fds s0_socks s0_thr s0_rss <<<"$(stat_of "$S_PID")"

log "subscribing: every svcN.service.consul A asked once through c1's DNS (two passes)"
for i in $(seq "$N"); do echo "svc$i.service.consul A"; done >"$tmp/all.txt"
t0=$(date +%s.%N)
dnsperf -s 127.0.0.1 -p "$C_DNS" -d "$tmp/all.txt" -n 1 -c 4 >"$out/subscribe-1.txt" 2>&1 || true
t1=$(date +%s.%N)
sleep 3
dnsperf -s 127.0.0.1 -p "$C_DNS" -d "$tmp/all.txt" -n 1 -c 4 >"$out/subscribe-2.txt" 2>&1 || true
codes() { awk -F': *' '/Response codes/ {print $2}' "$out/$1.txt"; }
sleep 5
read -r c1_fds c1_socks c1_thr c1_rss <<<"$(stat_of "$C_PID")"
read -r s1_fds s1_socks s1_thr s1_rss <<<"$(stat_of "$S_PID")"
a0=$(ticks "$C_PID"); b0=$(ticks "$S_PID"); sleep 10; a1=$(ticks "$C_PID"); b1=$(ticks "$S_PID")
c_idle=$(awk -v a=$((a1 - a0)) -v h="$TCK" 'BEGIN {printf "%.1f", a / h / 10 * 100}')
s_idle=$(awk -v a=$((b1 - b0)) -v h="$TCK" 'BEGIN {printf "%.1f", a / h / 10 * 100}')

# a change to one subscribed service: time until c1's DNS shows it
log "propagation: a second instance of svc1"
curl -sf -X PUT -d '{"Node":"extra","Address":"10.255.0.2","Service":{"Service":"svc1","ID":"svc1b","Port":9001}}' \
	"http://127.0.0.1:$S_HTTP/v1/catalog/register" >/dev/null
p0=$(date +%s%N)
two() { [ "$(dig +short @127.0.0.1 -p "$C_DNS" svc1.service.consul A | wc -l)" -ge 2 ]; }
prop="timeout"
for _ in $(seq 1500); do
	if two; then prop=$(( ($(date +%s%N) - p0) / 1000000 )); break; fi
	sleep 0.02
done

{
	echo "## View: client agent with $N services subscribed ($(basename "$AGENT"))"
	echo
	echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC') (run $stamp); command: \`AGENT=$AGENT N=$N bench/view/run.sh\`"
	echo "- $REG_OK/$N registrations answered 200; subscription passes (dnsperf -n 1 -c 4 over all names via c1's DNS): $(codes subscribe-1) / $(codes subscribe-2); first pass took $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"
	echo
	echo "| | client c1 before | client c1 after | server s1 before | server s1 after |"
	echo "|---|---:|---:|---:|---:|"
	echo "| open fds | $c0_fds | $c1_fds | $s0_fds | $s1_fds |"
	echo "| of which sockets | $c0_socks | $c1_socks | $s0_socks | $s1_socks |"
	echo "| threads | $c0_thr | $c1_thr | $s0_thr | $s1_thr |"
	echo "| RSS MB | $((c0_rss / 1024)) | $((c1_rss / 1024)) | $((s0_rss / 1024)) | $((s1_rss / 1024)) |"
	echo "| idle CPU % of one core (10 s) | | $c_idle | | $s_idle |"
	echo
	echo "a new instance of svc1 registered on the server showed in c1's DNS after: $prop ms"
	echo "client log: $(grep -c . "$out/c1.log" || true) lines, $(grep -c 'too many open files' "$out/c1.log" || true) 'too many open files'"
} | tee "$out/report.md"
