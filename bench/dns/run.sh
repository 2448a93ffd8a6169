#!/usr/bin/env bash
# bench/dns/run.sh — DNS benchmark: Outrigger's agent (single-node -dev) against
# Knot DNS (Debian's knotd) serving the same records from a zone file, measured
# in ONE run on this machine with the same dnsperf query mix:
#   50 % "web.service.consul A", 50 % "web.service.consul SRV" (3 instances of web).
# Then 10,000 extra services are registered in the agent, each is queried once
# (the agent's view is demand-driven), and the web mix is measured again.
#
# Usage: bench/dns/run.sh   (knobs: DURATION=20 ROUNDS=2 CT=4x1 SWEEP="1x1 4x1 8x2 16x2" LAT_DURATION=10 LAT_RATE=auto
#                            EXTRA=10000 BASE=28000 NO_BUILD=0 KEEP=0 AGENT=bin/agent)
# AGENT=path runs that binary instead of building bin/agent (e.g. an older build, for a before/after).
# Prints a markdown table (ours, Knot, ratio); raw output under bench/results/dns-<UTC time>/.
# Every process it starts is stopped on exit (trap).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-20}         # seconds per timed throughput phase
ROUNDS=${ROUNDS:-2}              # throughput phases per system, alternating ours/knot
CT=${CT:-4x1}                    # dnsperf -c CLIENTS x -T THREADS for every timed phase
SWEEP=${SWEEP:-}                 # e.g. "1x1 4x1 8x2 16x2": try these (5 s each per system) first and use the best (geometric mean)
LAT_DURATION=${LAT_DURATION:-10} # seconds for each latency (-v) phase
LAT_RATE=${LAT_RATE:-auto}       # fixed-rate latency phase: queries/s (auto = 50 % of the slower system's max)
EXTRA=${EXTRA:-10000}            # extra services for the "large view" case
BASE=${BASE:-28000}              # ports: ours http BASE+500, dns BASE+600, serf BASE+301, server BASE+300; knot BASE+700
NO_BUILD=${NO_BUILD:-0}
KEEP=${KEEP:-0}                  # keep the temp dir (agent/knot data)
AGENT=${AGENT:-}                 # agent binary to run; default: build bin/agent
CMDLINE="bench/dns/run.sh"
for vd in DURATION=20 ROUNDS=2 CT=4x1 SWEEP= LAT_DURATION=10 LAT_RATE=auto EXTRA=10000 BASE=28000; do
	v=${vd%%=*}
	[ "${!v}" != "${vd#*=}" ] && CMDLINE="$v=\"${!v}\" $CMDLINE"
done

HTTP=$((BASE + 500)); DNS=$((BASE + 600)); SERF=$((BASE + 301)); SRVP=$((BASE + 300)); KNOT=$((BASE + 700))

# ---------------------------------------------------------------- setup
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (apt-get)" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
if [ -z "$AGENT" ]; then
	[ "$NO_BUILD" = 1 ] || make -s build
	AGENT=$root/bin/agent
else
	CMDLINE="AGENT=$AGENT $CMDLINE"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$root/bench/results/dns-$stamp
mkdir -p "$out"
tmp=$(mktemp -d /tmp/dnsbench.XXXXXX)
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
wait_for() { # wait_for DESC SECONDS CMD...: bounded poll
	local desc=$1 n=$2; shift 2
	for _ in $(seq $((n * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "timed out waiting for $desc" >&2; return 1
}

# ---------------------------------------------------------------- ours
log "starting agent (dns 127.0.0.1:$DNS, http :$HTTP)"
mkdir -p "$tmp/agent"
(cd "$tmp/agent" && exec "$AGENT" run -dev -http-port "$HTTP" -dns-port "$DNS" -serf-port "$SERF" \
	-server-port "$SRVP" -log-level warn) >"$out/agent.log" 2>&1 &
pids+=($!); AGENT_PID=$!
wait_for "agent HTTP" 30 curl -sf "http://127.0.0.1:$HTTP/v1/agent/self"
for i in 1 2 3; do
	curl -sf -X PUT -d "{\"Name\":\"web\",\"ID\":\"web$i\",\"Port\":$((8080 + i)),\"Address\":\"127.0.0.$((i + 1))\"}" \
		"http://127.0.0.1:$HTTP/v1/agent/service/register" >/dev/null
done
three() { [ "$(dig +short @127.0.0.1 -p "$DNS" web.service.consul SRV | wc -l)" -eq 3 ]; }
wait_for "3 web SRV records from the agent" 30 three

# ---------------------------------------------------------------- knot, zone mirrored from our answers
dig @127.0.0.1 -p "$DNS" web.service.consul A +noall +answer +additional +nottlid >"$out/ours-A.dig" 2>&1 || true
dig @127.0.0.1 -p "$DNS" web.service.consul A >"$out/ours-A.full.dig"
dig @127.0.0.1 -p "$DNS" web.service.consul SRV >"$out/ours-SRV.full.dig"
mkdir -p "$tmp/knot/run" "$tmp/knot/db" "$tmp/knot/zones"
{
	echo '$ORIGIN consul.'
	echo '$TTL 0'
	echo '@ 3600 IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0'
	echo '@ 3600 IN NS ns.consul.'
	echo 'ns 3600 IN A 127.0.0.1'
	# every record of our A and SRV answers (answer + additional), verbatim, TTL as ours gives it
	for t in A SRV; do
		dig @127.0.0.1 -p "$DNS" web.service.consul "$t" +noall +answer +additional
	done | awk '$1 !~ /^;/ && NF >= 5' | sort -u
} >"$tmp/knot/zones/consul.zone"
cp "$tmp/knot/zones/consul.zone" "$out/consul.zone"
cat >"$tmp/knot/knot.conf" <<KC
server:
    rundir: "$tmp/knot/run"
    user: root:root
    listen: 127.0.0.1@$KNOT
log:
  - target: stderr
    any: warning
database:
    storage: "$tmp/knot/db"
template:
  - id: default
    storage: "$tmp/knot/zones"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: consul.
    file: consul.zone
KC
cp "$tmp/knot/knot.conf" "$out/knot.conf"
log "starting knotd (127.0.0.1:$KNOT)"
"$KNOTD" -c "$tmp/knot/knot.conf" >"$out/knot.log" 2>&1 &
pids+=($!); KNOT_PID=$!
kthree() { [ "$(dig +short @127.0.0.1 -p "$KNOT" web.service.consul SRV | wc -l)" -eq 3 ]; }
wait_for "3 web SRV records from knot" 30 kthree
dig @127.0.0.1 -p "$KNOT" web.service.consul A >"$out/knot-A.full.dig"
dig @127.0.0.1 -p "$KNOT" web.service.consul SRV >"$out/knot-SRV.full.dig"

# the query mix: 50 % A, 50 % SRV
printf 'web.service.consul A\nweb.service.consul SRV\n' >"$out/queries.txt"

port_of() { [ "$1" = ours ] && echo "$DNS" || echo "$KNOT"; }
# perf NAME SYS LIMIT CxT [extra dnsperf args...] -> writes $out/NAME.txt
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
perf() { # also writes $out/NAME.cpu: "agent-CPU-% knot-CPU-%" (of one core) during the run
	local name=$1 sys=$2 lim=$3 ct=$4; shift 4
	local a0 k0 t0 a1 k1 t1
	a0=$(ticks "$AGENT_PID"); k0=$(ticks "$KNOT_PID"); t0=$(date +%s.%N)
	dnsperf -s 127.0.0.1 -p "$(port_of "$sys")" -d "$out/queries.txt" -l "$lim" \
		-c "${ct%x*}" -T "${ct#*x}" "$@" >"$out/$name.txt" 2>&1 || true
	a1=$(ticks "$AGENT_PID"); k1=$(ticks "$KNOT_PID"); t1=$(date +%s.%N)
	awk -v a="$((a1 - a0))" -v k="$((k1 - k0))" -v t0="$t0" -v t1="$t1" -v h="$TCK" \
		'BEGIN {printf "%.0f %.0f\n", a / h / (t1 - t0) * 100, k / h / (t1 - t0) * 100}' >"$out/$name.cpu"
}
cpu_of() { local label=$1 sys=$2 col; [ "$sys" = ours ] && col=1 || col=2; for r in $(seq "$ROUNDS"); do awk -v c=$col '{print $c}' "$out/$label-$sys-$r.cpu"; done | awk '{s += $1} END {printf "%.0f", s / NR}'; }
idle() { # idle LABEL: agent CPU % (one core) over 10 s with no DNS load, its open fds and threads
	local a0 a1
	a0=$(ticks "$AGENT_PID"); sleep 10; a1=$(ticks "$AGENT_PID")
	echo "$(awk -v a="$((a1 - a0))" -v h="$TCK" 'BEGIN {printf "%.0f", a / h / 10 * 100}')% CPU, $(ls "/proc/$AGENT_PID/fd" | wc -l) fds, $(awk '/^Threads/ {print $2}' "/proc/$AGENT_PID/status") threads, RSS $(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$AGENT_PID/status")" >"$out/idle-$1.txt"
}
qps_of() { awk '/Queries per second:/ {print $4}' "$out/$1.txt"; }
field() { awk -v k="$2" '$0 ~ k {print $3; exit}' "$out/$1.txt"; } # field NAME "Queries sent:" etc
lost_of() { awk '/Queries lost:/ {print $3}' "$out/$1.txt"; }
sent_of() { awk '/Queries sent:/ {print $3}' "$out/$1.txt"; }
done_of() { awk '/Queries completed:/ {print $3}' "$out/$1.txt"; }
avg_us() { awk '/Average Latency/ {printf "%.0f", $4 * 1e6}' "$out/$1.txt"; }
# p50/p99/p999 (µs) from dnsperf -v per-query lines "> RCODE name type seconds"
pct() { # sorted per-query times are cached in $out/NAME.lat (sorting ~1M lines once, not per cell)
	[ -s "$out/$1.lat" ] || awk '$1 == ">" {print $NF}' "$out/$1.txt" | sort -g >"$out/$1.lat"
	awk -v p="$2" '{a[NR] = $1} END {if (NR == 0) {print "n/a"; exit}; i = int(NR * p); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.0f", a[i] * 1e6}' "$out/$1.lat"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }

# ---------------------------------------------------------------- sweep: pick a saturating -c/-T
[ -n "$SWEEP" ] && log "sweep: $SWEEP (5 s each)"
best=$CT; bestscore=0
sweep_rows=""
for ct in $SWEEP; do
	perf "sweep-ours-$ct" ours 5 "$ct"
	perf "sweep-knot-$ct" knot 5 "$ct"
	qo=$(qps_of "sweep-ours-$ct"); qk=$(qps_of "sweep-knot-$ct")
	sweep_rows+="| $ct | ${qo%.*} | ${qk%.*} | lost $(lost_of "sweep-ours-$ct")/$(lost_of "sweep-knot-$ct") |"$'\n'
	s=$(awk -v a="$qo" -v b="$qk" 'BEGIN {printf "%.0f", sqrt(a * b)}')
	if [ "$s" -gt "$bestscore" ]; then bestscore=$s; best=$ct; fi
done
CT=$best
log "chosen -c/-T: $CT"

# ---------------------------------------------------------------- throughput, alternating
tput() { # tput LABEL SYS... ; prints mean qps per sys into globals
	local label=$1
	for r in $(seq "$ROUNDS"); do
		for sys in ours knot; do
			log "$label round $r: $sys ($DURATION s)"
			perf "$label-$sys-$r" "$sys" "$DURATION" "$CT"
		done
	done
}
mean_qps() { local label=$1 sys=$2; for r in $(seq "$ROUNDS"); do qps_of "$label-$sys-$r"; done | awk '{s += $1} END {printf "%.0f", s / NR}'; }
sum_of() { local f=$1 label=$2 sys=$3; for r in $(seq "$ROUNDS"); do $f "$label-$sys-$r"; done | awk '{s += $1} END {print s}'; }

idle before3
tput t3
Q_OURS=$(mean_qps t3 ours); Q_KNOT=$(mean_qps t3 knot)

# latency at saturation (-v per-query output; separate runs since printing costs dnsperf CPU)
for sys in ours knot; do
	log "latency at saturation: $sys ($LAT_DURATION s, -v)"
	perf "latsat-$sys" "$sys" "$LAT_DURATION" "$CT" -v
done
# latency at a fixed rate both sustain (-Q), so it measures service time, not queueing
if [ "$LAT_RATE" = auto ]; then
	LAT_RATE=$(awk -v a="$Q_OURS" -v b="$Q_KNOT" 'BEGIN {m = (a < b) ? a : b; printf "%d", int(m / 2 / 1000) * 1000}')
fi
for sys in ours knot; do
	log "latency at $LAT_RATE q/s: $sys ($LAT_DURATION s, -v)"
	perf "latfix-$sys" "$sys" "$LAT_DURATION" "$CT" -v -Q "$LAT_RATE"
done

# ---------------------------------------------------------------- 10k extra services
log "registering $EXTRA extra services (catalog API, parallel curl)"
mkdir -p "$tmp/reg"
n_per=$(( (EXTRA + 7) / 8 ))
for w in $(seq 0 7); do
	: >"$tmp/reg/$w.cfg"
	first=1
	for i in $(seq $((w * n_per + 1)) $(( (w + 1) * n_per ))); do
		[ "$i" -le "$EXTRA" ] || break
		[ $first = 1 ] || echo "next" >>"$tmp/reg/$w.cfg"
		first=0
		a=$(( i / 250 )); b=$(( i % 250 + 1 ))
		printf 'url = "http://127.0.0.1:%s/v1/catalog/register"\nrequest = "PUT"\noutput = "/dev/null"\nsilent\nwrite-out = "%%{http_code}\\n"\ndata = "{\\"Node\\":\\"n%d\\",\\"Address\\":\\"10.%d.%d.1\\",\\"Service\\":{\\"Service\\":\\"svc%d\\",\\"ID\\":\\"svc%d\\",\\"Port\\":9000}}"\n' \
			"$HTTP" "$i" "$a" "$b" "$i" "$i" >>"$tmp/reg/$w.cfg"
	done
done
t0=$(date +%s.%N)
cpids=()
for w in $(seq 0 7); do curl -K "$tmp/reg/$w.cfg" >"$tmp/reg/$w.out" 2>&1 & cpids+=($!); done
for p in "${cpids[@]}"; do wait "$p" || true; done
t1=$(date +%s.%N)
REG_OK=$(cat "$tmp/reg/"*.out | grep -c '^200$' || true)
REG_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
log "registered: $REG_OK x 200 in $REG_S s"
curl -sf "http://127.0.0.1:$HTTP/v1/catalog/services" >"$out/catalog-services.json" || true
N_CAT=$(grep -o '"svc[0-9]*"' "$out/catalog-services.json" | wc -l)
# query every service once so the agent's view holds all of them (twice; the second pass counts NOERROR)
for i in $(seq "$EXTRA"); do echo "svc$i.service.consul A"; done >"$tmp/all.txt"
for pass in 1 2; do
	dnsperf -s 127.0.0.1 -p "$DNS" -d "$tmp/all.txt" -n 1 -c 4 >"$out/subscribe-$pass.txt" 2>&1 || true
	sleep 2
done
SUB_NOERR=$(awk '/Response codes:/ {for (i = 1; i <= NF; i++) if ($i == "NOERROR") print $(i+1)}' "$out/subscribe-2.txt")
SUB_SENT=$(sent_of subscribe-2)
dig @127.0.0.1 -p "$DNS" "svc$EXTRA.service.consul" A >"$out/ours-svc-last.dig" 2>&1 || true
three || log "WARNING: web no longer has 3 SRV records"
idle before10k
tput t10k
Q_OURS10=$(mean_qps t10k ours); Q_KNOT10=$(mean_qps t10k knot)
perf "latsat10k-ours" ours "$LAT_DURATION" "$CT" -v

# ---------------------------------------------------------------- report
psize() { awk '/Average packet size/ {gsub(",", ""); print $5 "/" $7}' "$out/$1.txt"; }
lostc() { echo "$(sum_of lost_of "$1" "$2") lost / $(sum_of done_of "$1" "$2") completed"; }
{
	echo "## DNS: Outrigger agent vs Knot DNS ($(dnsperf -h 2>&1 | awk '/^Version/ {print "dnsperf " $2}'; true), knotd $("$KNOTD" -V 2>&1 | awk '{print $NF}'))"
	echo
	echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC') (run $stamp)"
	echo "- command: \`$CMDLINE\`; dnsperf -c ${CT%x*} -T ${CT#*x} -l $DURATION (no -Q = as fast as the outstanding window allows), $ROUNDS rounds alternating ours/knot; queries: 50 % web.service.consul A, 50 % SRV"
	echo "- response size request/response bytes: ours $(psize t3-ours-1), knot $(psize t3-knot-1)"
	echo "- raw: bench/results/dns-$stamp/"
	echo
	echo "| measurement | ours | Knot | ratio ours/Knot | goal |"
	echo "|---|---:|---:|---:|---|"
	echo "| queries/s, 3 services | $Q_OURS | $Q_KNOT | $(ratio "$Q_OURS" "$Q_KNOT") | ≥ 0.6 |"
	for k in latsat latfix; do
		[ $k = latsat ] && d="at saturation (-c ${CT%x*} -T ${CT#*x})" || d="at fixed $LAT_RATE q/s"
		po=$(pct "$k-ours" 0.99); pk=$(pct "$k-knot" 0.99)
		echo "| p50 latency µs, $d | $(pct "$k-ours" 0.5) | $(pct "$k-knot" 0.5) | $(ratio "$(pct "$k-ours" 0.5)" "$(pct "$k-knot" 0.5)") | |"
		echo "| p99 latency µs, $d | $po | $pk | $(ratio "$po" "$pk") | ≤ 2 |"
		echo "| p99.9 latency µs, $d | $(pct "$k-ours" 0.999) | $(pct "$k-knot" 0.999) | $(ratio "$(pct "$k-ours" 0.999)" "$(pct "$k-knot" 0.999)") | |"
		echo "| dnsperf avg latency µs, $d | $(avg_us "$k-ours") | $(avg_us "$k-knot") | $(ratio "$(avg_us "$k-ours")" "$(avg_us "$k-knot")") | |"
	done
	echo "| queries/s, web with +$EXTRA services in the agent | $Q_OURS10 | $Q_KNOT10 (unchanged zone) | $(ratio "$Q_OURS10" "$Q_KNOT10") | |"
	echo "| **ours: +$EXTRA services / 3 services** | $(ratio "$Q_OURS10" "$Q_OURS") | $(ratio "$Q_KNOT10" "$Q_KNOT") (Knot drift, same zone) | | ≥ 0.90 |"
	echo "| **ours: +$EXTRA / 3, drift-adjusted** (ours ratio ÷ Knot ratio) | $(awk -v a="$Q_OURS10" -v b="$Q_OURS" -v c="$Q_KNOT10" -v d="$Q_KNOT" 'BEGIN {printf "%.2f", (a / b) / (c / d)}') | | | ≥ 0.90 |"
	echo "| p99 latency µs at saturation, +$EXTRA services | $(pct latsat10k-ours 0.99) | | | |"
	echo "| server CPU % (of 1 core) under load, 3 services | $(cpu_of t3 ours) | $(cpu_of t3 knot) | | |"
	uspq() { awk -v c="$1" -v q="$2" 'BEGIN {if (q + 0 == 0) print "n/a"; else printf "%.1f", c * 1e4 / q}'; }
	uo=$(uspq "$(cpu_of t3 ours)" "$Q_OURS"); uk=$(uspq "$(cpu_of t3 knot)" "$Q_KNOT")
	echo "| server CPU µs per query (its CPU time ÷ queries answered; robust to machine load), 3 services | $uo | $uk | $(ratio "$uo" "$uk") | |"
	echo "| server CPU % (of 1 core) under load, +$EXTRA services | $(cpu_of t10k ours) | $(cpu_of t10k knot) | | |"
	uo10=$(uspq "$(cpu_of t10k ours)" "$Q_OURS10"); uk10=$(uspq "$(cpu_of t10k knot)" "$Q_KNOT10")
	echo "| server CPU µs per query, +$EXTRA services | $uo10 | $uk10 | $(ratio "$uo10" "$uk10") | |"
	echo "| **ours: CPU µs per query, +$EXTRA services ÷ 3 services** (load-robust form of the 10k goal) | $(ratio "$uo10" "$uo") | | | ≤ 1.10 |"
	echo
	echo "agent idle (10 s, no DNS load): 3 services: $(cat "$out/idle-before3.txt"); +$EXTRA services (all queried once): $(cat "$out/idle-before10k.txt")"
	echo "agent log: $(grep -c . "$out/agent.log" || true) lines, $(grep -c 'too many open files' "$out/agent.log" || true) 'too many open files', $(grep -c 'read failed' "$out/agent.log" || true) 'view: read failed' (ulimit -n $(ulimit -n))"
	echo "subscription passes response codes: $(awk -F': *' '/Response codes/ {print $2}' "$out/subscribe-1.txt") / $(awk -F': *' '/Response codes/ {print $2}' "$out/subscribe-2.txt")"
	echo
	echo "lost/completed: 3 svc ours $(lostc t3 ours), knot $(lostc t3 knot); +$EXTRA ours $(lostc t10k ours), knot $(lostc t10k knot);"
	echo "latency runs lost: sat ours $(lost_of latsat-ours) knot $(lost_of latsat-knot), fixed ours $(lost_of latfix-ours) knot $(lost_of latfix-knot), 10k ours $(lost_of latsat10k-ours)"
	echo
	echo "10k setup: $REG_OK/$EXTRA catalog registrations answered 200 in $REG_S s; /v1/catalog/services lists $N_CAT svcN; second query pass over all names: $SUB_NOERR NOERROR of $SUB_SENT sent"
	echo
	echo "per round queries/s: 3 svc ours $(for r in $(seq "$ROUNDS"); do printf '%.0f ' "$(qps_of t3-ours-$r)"; done)knot $(for r in $(seq "$ROUNDS"); do printf '%.0f ' "$(qps_of t3-knot-$r)"; done); +$EXTRA ours $(for r in $(seq "$ROUNDS"); do printf '%.0f ' "$(qps_of t10k-ours-$r)"; done)knot $(for r in $(seq "$ROUNDS"); do printf '%.0f ' "$(qps_of t10k-knot-$r)"; done)"
	echo
	if [ -n "$SWEEP" ]; then
		echo "sweep (5 s each, chosen: $CT):"
		echo
		echo "| -c x -T | ours q/s | knot q/s | lost |"
		echo "|---|---:|---:|---|"
		printf '%s' "$sweep_rows"
	fi
} | tee "$out/report.md"

# the -v per-query outputs are large: keep them compressed
rm -f "$out"/*.lat
gzip -f "$out"/lat*.txt
