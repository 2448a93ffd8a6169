#!/usr/bin/env bash
# bench/kv/run.sh — K/V benchmark: Outrigger's 3 servers against a 3-member
# etcd 3.4 (Debian's etcd-server), in one run on this machine, fsync on for
# both, the same load generator (wrk + bench/kv/kv.lua) for both.
#
# Usage: bench/kv/run.sh            (see bench/kv/README.md for the knobs)
#   DURATION=25 ROUNDS=2 CONNS=64 THREADS=2 KEYS=10000 RESTART_KEYS=100000
#   RESTARTS=3 SYSTEMS="etcd ours" VIA_FOLLOWER=1 NOBATCH_ARGS=auto
#   DATA_ROOT=/var/tmp KEEP_DATA=0 GOBENCH=1 NO_BUILD=0
#
# Both clusters run side by side (the one not under load is idle) and the
# timed phases alternate between them, ROUNDS times in ABBA order, so that
# whatever else the machine is doing falls on both alike; every phase also
# records how much CPU the members, wrk and everything else used.
#
# Prints a markdown table (ours, etcd, ratio) and writes everything raw under
# bench/results/kv-<UTC time>/. Every process it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-25}           # seconds per timed phase
ROUNDS=${ROUNDS:-2}                # timed phases are run this many times each, alternating systems
CONNS=${CONNS:-64}                 # concurrent clients (wrk connections)
THREADS=${THREADS:-2}              # wrk threads
KEYS=${KEYS:-10000}                # key space of the timed phases
RESTART_KEYS=${RESTART_KEYS:-100000}
RESTARTS=${RESTARTS:-3}            # repetitions of each restart measurement
SYSTEMS=${SYSTEMS:-"etcd ours"}
VIA_FOLLOWER=${VIA_FOLLOWER:-1}    # also writes and reads sent to a follower
NOBATCH_ARGS=${NOBATCH_ARGS:-auto} # agent flag(s) turning raft's BatchApplyCh off; auto = look in `agent run -h`
GOBENCH=${GOBENCH:-1}              # run kvstore's BenchmarkApplyParallel if it exists
OURS_BASE=${OURS_BASE:-24000}      # ports: node i uses base+10i+{1 serf,2 server,3 http,4 dns}
ETCD_BASE=${ETCD_BASE:-25000}      # ports: member i uses base+10i+{1 client,2 peer}
DATA_ROOT=${DATA_ROOT:-/var/tmp}   # both systems' data dirs go under one dir here (not tmpfs)
KEEP_DATA=${KEEP_DATA:-0}
NO_BUILD=${NO_BUILD:-0}
AGENT=$root/bin/agent
CMDLINE="bench/kv/run.sh"
for vd in DURATION=25 ROUNDS=2 CONNS=64 THREADS=2 KEYS=10000 RESTART_KEYS=100000 RESTARTS=3 \
	"SYSTEMS=etcd ours" VIA_FOLLOWER=1 NOBATCH_ARGS=auto; do
	v=${vd%%=*}
	[ "${!v}" != "${vd#*=}" ] && CMDLINE="$v=\"${!v}\" $CMDLINE"
done

# ---------------------------------------------------------------- setup
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v etcd >/dev/null || need+=(etcd-server)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} (apt-get)" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$NO_BUILD" != 1 ]; then
	make -s build
fi
[ -x "$AGENT" ] || { echo "no $AGENT (make build)" >&2; exit 1; }
# etcd reads ETCD_* variables as flags: keep the caller's out of it
for v in $(compgen -e | grep '^ETCD_' || true); do unset "$v"; done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
RES=$root/bench/results/kv-$stamp
mkdir -p "$RES" "$DATA_ROOT"
DATA=$(mktemp -d "$DATA_ROOT/outrigger-bench-kv.XXXXXX")
fstype=$(df --output=fstype "$DATA" | tail -1)
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
	echo "DATA_ROOT=$DATA_ROOT is $fstype: fsync would cost nothing; use a disk-backed dir" >&2
	rmdir "$DATA"
	exit 1
fi
fsdev=$(df --output=source "$DATA" | tail -1)
# a private copy of the binary: others may rebuild bin/agent during the run
cp "$AGENT" "$DATA/agent"
AGENT=$DATA/agent
agentsum=$(sha256sum "$AGENT" | cut -c1-12)
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

PIDS=()
# alive PID: running and not a zombie
alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}
# stop_pids PID...: SIGTERM (or $KILL_SIGNAL), wait up to 20 s, then SIGKILL
stop_pids() {
	local p left keep=() q
	for p in "$@"; do kill "-${KILL_SIGNAL:-TERM}" "$p" 2>/dev/null || true; done
	for _ in $(seq 200); do
		left=0
		for p in "$@"; do alive "$p" && left=1; done
		[ $left = 0 ] && break
		sleep 0.1
	done
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# forget them, so that cleanup never signals a reused pid
	for q in "${PIDS[@]}"; do [[ " $* " == *" $q "* ]] || keep+=("$q"); done
	PIDS=("${keep[@]}")
}
cleanup() {
	[ ${#PIDS[@]} -gt 0 ] && stop_pids "${PIDS[@]}"
	if [ "$KEEP_DATA" = 1 ]; then echo "data kept in $DATA" >&2; else rm -rf "$DATA"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%T)] $*" | tee -a "$RES/log.txt" >&2; }
now_ms() { date +%s%3N; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
b64() { printf %s "$1" | base64 -w0; }
# CPU clock ticks (user+system) used by a process so far
ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0; }
# busy ticks of the whole machine (all cores) so far
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
steal_ticks() { awk '/^cpu /{print $9; exit}' /proc/stat; }

declare -A R        # results: R[key]
declare -A LEAD FOLL # per system: leader and follower member numbers

# ---------------------------------------------------------------- etcd
ecport() { echo $((ETCD_BASE + $1 * 10 + 1)); }
epport() { echo $((ETCD_BASE + $1 * 10 + 2)); }
declare -A EPID
etcd_start() { # i
	local i=$1 cluster="" j
	for j in 1 2 3; do cluster+="${cluster:+,}e$j=http://127.0.0.1:$(epport "$j")"; done
	etcd --name "e$i" --data-dir "$DATA/etcd/e$i" \
		--listen-peer-urls "http://127.0.0.1:$(epport "$i")" --initial-advertise-peer-urls "http://127.0.0.1:$(epport "$i")" \
		--listen-client-urls "http://127.0.0.1:$(ecport "$i")" --advertise-client-urls "http://127.0.0.1:$(ecport "$i")" \
		--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token outrigger-bench \
		--logger zap --log-level warn >>"$RES/etcd-e$i.log" 2>&1 &
	EPID[$i]=$!
	PIDS+=("$!")
	disown "$!" # no "Killed" job reports from bash after kill -9
}
etcd_status() { curl -s --max-time 1 -X POST "http://127.0.0.1:$(ecport "$1")/v3/maintenance/status" -d '{}' 2>/dev/null || true; }
# etcd_wait: sets LEAD/FOLL[etcd] once all three agree on a leader
etcd_wait() {
	local deadline=$(($(now_ms) + 60000)) i s mid lid leaders leader
	while [ "$(now_ms)" -lt $deadline ]; do
		leader="" leaders=""
		for i in 1 2 3; do
			s=$(etcd_status "$i")
			mid=$(grep -o '"member_id":"[0-9]*"' <<<"$s" | grep -o '[0-9]\+' || true)
			lid=$(grep -o '"leader":"[0-9]*"' <<<"$s" | grep -o '[0-9]\+' || true)
			[ -n "$lid" ] && [ "$lid" != 0 ] && leaders+="$lid "
			[ -n "$mid" ] && [ "$mid" = "$lid" ] && leader=$i
		done
		if [ -n "$leader" ] && [ "$(tr ' ' '\n' <<<"$leaders" | grep -c .)" = 3 ] &&
			[ "$(tr ' ' '\n' <<<"$leaders" | sort -u | grep -c .)" = 1 ]; then
			LEAD[etcd]=$leader
			FOLL[etcd]=$((leader % 3 + 1))
			return 0
		fi
		sleep 0.1
	done
	log "  etcd: no common leader"
	return 1
}
etcd_count() { # i: keys under bench/
	curl -s --max-time 10 -X POST "http://127.0.0.1:$(ecport "$1")/v3/kv/range" \
		-d "{\"key\":\"$(b64 bench/)\",\"range_end\":\"$(b64 bench0)\",\"count_only\":true}" |
		grep -o '"count":"[0-9]*"' | grep -o '[0-9]\+' || echo 0
}
etcd_get_ok() { # i key stale(0|1)
	local extra=""
	[ "$3" = 1 ] && extra=',"serializable":true'
	curl -s --max-time 1 -X POST "http://127.0.0.1:$(ecport "$1")/v3/kv/range" \
		-d "{\"key\":\"$(b64 "$2")\"$extra}" 2>/dev/null | grep -q '"kvs"'
}

# ---------------------------------------------------------------- ours
oport() { echo $(($1 + $2 * 10 + $3)); } # base, i, 1 serf 2 server 3 http 4 dns
declare -A OPID
OURS_EXTRA=()
# ours_start NAME BASE i: member i of the cluster NAME (data under $DATA/NAME)
ours_start() {
	local name=$1 base=$2 i=$3 j args
	args=(run -server -bootstrap-expect 3 -node "kv$i" -bind 127.0.0.1
		-serf-port "$(oport "$base" "$i" 1)" -server-port "$(oport "$base" "$i" 2)"
		-http-port "$(oport "$base" "$i" 3)" -dns-port "$(oport "$base" "$i" 4)"
		-data-dir "$DATA/$name/kv$i" -log-level warn)
	for j in 1 2 3; do [ "$j" != "$i" ] && args+=(-retry-join "127.0.0.1:$(oport "$base" "$j" 1)"); done
	"$AGENT" "${args[@]}" "${OURS_EXTRA[@]}" >>"$RES/$name-kv$i.log" 2>&1 &
	OPID[$name.$i]=$!
	PIDS+=("$!")
	disown "$!"
}
# ours_wait NAME BASE: sets LEAD/FOLL[NAME] once all three name the same leader
ours_wait() {
	local name=$1 base=$2 deadline=$(($(now_ms) + 90000)) i l all
	while [ "$(now_ms)" -lt $deadline ]; do
		all=""
		for i in 1 2 3; do
			l=$(curl -s --max-time 1 "http://127.0.0.1:$(oport "$base" "$i" 3)/v1/status/leader" 2>/dev/null | tr -d '"[:space:]' || true)
			all+="${l:-none} "
		done
		l=${all%% *}
		if [ "$l" != none ] && [ "$all" = "$l $l $l " ]; then
			for i in 1 2 3; do
				if [ "$l" = "127.0.0.1:$(oport "$base" "$i" 2)" ]; then
					LEAD[$name]=$i
					FOLL[$name]=$((i % 3 + 1))
					return 0
				fi
			done
		fi
		sleep 0.2
	done
	log "  $name: no common leader: $all"
	return 1
}
ours_count() { # base i
	curl -s --max-time 10 "http://127.0.0.1:$(oport "$1" "$2" 3)/v1/kv/bench/?keys" | grep -o '"bench/[0-9]*"' | wc -l
}
ours_get_ok() { # base i key stale(0|1)
	local q=""
	[ "$4" = 1 ] && q='?stale'
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(oport "$1" "$2" 3)/v1/kv/$3$q" 2>/dev/null)" = 200 ]
}

# ---------------------------------------------------------------- per system
# S is etcd, ours or ours_nb (ours with batching off, its own cluster)
base_of() { if [ "$1" = ours_nb ]; then echo $((OURS_BASE + 100)); else echo "$OURS_BASE"; fi; }
s_start() { if [ "$1" = etcd ]; then etcd_start "$2"; else ours_start "$1" "$(base_of "$1")" "$2"; fi; }
s_wait() { if [ "$1" = etcd ]; then etcd_wait; else ours_wait "$1" "$(base_of "$1")"; fi; }
s_pid() { if [ "$1" = etcd ]; then echo "${EPID[$2]}"; else echo "${OPID[$1.$2]}"; fi; }
s_url() { if [ "$1" = etcd ]; then echo "http://127.0.0.1:$(ecport "$2")"; else echo "http://127.0.0.1:$(oport "$(base_of "$1")" "$2" 3)"; fi; }
s_api() { if [ "$1" = etcd ]; then echo etcd; else echo consul; fi; }
s_count() { if [ "$1" = etcd ]; then etcd_count "$2"; else ours_count "$(base_of "$1")" "$2"; fi; }
s_get_ok() { if [ "$1" = etcd ]; then etcd_get_ok "$2" "$3" "$4"; else ours_get_ok "$(base_of "$1")" "$2" "$3" "$4"; fi; }
s_stop_all() { stop_pids "$(s_pid "$1" 1)" "$(s_pid "$1" 2)" "$(s_pid "$1" 3)"; }
# crash: SIGKILL. Restarts use it for both systems: neither writes anything
# at shutdown, and ours does not leave the cluster (its SIGTERM default is
# leave_on_terminate=true, which takes a server out of the Raft configuration)
s_crash_all() { KILL_SIGNAL=KILL stop_pids "$(s_pid "$1" 1)" "$(s_pid "$1" 2)" "$(s_pid "$1" 3)"; }
s_member_ticks() { echo $(($(ticks "$(s_pid "$1" 1)") + $(ticks "$(s_pid "$1" 2)") + $(ticks "$(s_pid "$1" 3)"))); }

# s_up S: start the 3 members, wait for a leader; for ours check that the
# K/V API answers
s_up() {
	local s=$1 i t0 url c
	log "=== $s: starting 3 members"
	t0=$(now_ms)
	for i in 1 2 3; do s_start "$s" "$i"; done
	if ! s_wait "$s"; then
		R[$s.failed]="no leader"
		s_stop_all "$s"
		return 1
	fi
	R[$s.form_ms]=$(($(now_ms) - t0))
	log "  $s: leader member ${LEAD[$s]} (follower used: ${FOLL[$s]}), formed in ${R[$s.form_ms]} ms"
	if [ "$s" != etcd ]; then
		url=$(s_url "$s" "${LEAD[$s]}")
		c=$(curl -s --max-time 5 -X PUT -d hi "$url/v1/kv/bench-probe" || true)
		if [ "$c" != true ]; then
			log "  $s: PUT /v1/kv answers '${c:0:200}', not 'true': the K/V API is not there"
			R[$s.failed]="K/V API not available (PUT /v1/kv answered '${c:0:60}')"
			s_stop_all "$s"
			return 1
		fi
		curl -s --max-time 5 -X DELETE "$url/v1/kv/bench-probe" >/dev/null || true
	fi
}

# parse NAME FILE: the RESULT line of kv.lua into R[NAME.*]
parse() {
	local name=$1 file=$2 line kv
	line=$(grep '^RESULT ' "$file" | tail -1 || true)
	if [ -z "$line" ]; then
		log "  $name: no RESULT line (see $file)"
		R[$name.errors]=-1
		return
	fi
	for kv in ${line#RESULT }; do R[$name.${kv%%=*}]=${kv#*=}; done
	R[$name.errors]=$((R[$name.non2xx] + R[$name.bad] + R[$name.sock_connect] + R[$name.sock_read] + R[$name.sock_write] + R[$name.sock_timeout]))
}

# phase S PH OP MEMBER ROUND: one timed wrk run against member MEMBER of S
phase() {
	local s=$1 ph=$2 op=$3 m=$4 rd=$5 name url m0 m1 b0 b1 st0 st1 t0 t1 w
	name=$s.$ph.r$rd
	url=$(s_url "$s" "$m")
	m0=$(s_member_ticks "$s") b0=$(busy_ticks) st0=$(steal_ticks) t0=$(now_ms)
	TIMEFORMAT='%U %S'
	{ time wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
		-s "$here/kv.lua" "$url" -- "$(s_api "$s")" "$op" "$KEYS" "$THREADS" "$CONNS" >"$RES/$name.txt" 2>&1; } 2>"$RES/$name.time" || true
	m1=$(s_member_ticks "$s") b1=$(busy_ticks) st1=$(steal_ticks) t1=$(now_ms)
	parse "$name" "$RES/$name.txt"
	w=$(awk '{print $1 + $2}' "$RES/$name.time" 2>/dev/null || echo 0)
	R[$name.srv_cpu_s]=$(awk -v a="$m0" -v b="$m1" -v hz="$HZ" 'BEGIN{printf "%.2f", (b-a)/hz}')
	R[$name.wrk_cpu_s]=$w
	R[$name.wall_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1000}')
	R[$name.busy_pct]=$(awk -v a="$b0" -v b="$b1" -v hz="$HZ" -v w="${R[$name.wall_s]}" -v n="$NCPU" 'BEGIN{printf "%.0f", 100*(b-a)/hz/(w*n)}')
	R[$name.other_pct]=$(awk -v a="$b0" -v b="$b1" -v hz="$HZ" -v s="${R[$name.srv_cpu_s]}" -v k="$w" -v w="${R[$name.wall_s]}" -v n="$NCPU" 'BEGIN{x=100*((b-a)/hz-s-k)/(w*n); if(x<0)x=0; printf "%.0f", x}')
	R[$name.steal_pct]=$(awk -v a="$st0" -v b="$st1" -v hz="$HZ" -v w="${R[$name.wall_s]}" -v n="$NCPU" 'BEGIN{printf "%.0f", 100*(b-a)/hz/(w*n)}')
	R[$name.cpu_us_per_req]=$(awk -v s="${R[$name.srv_cpu_s]}" -v r="${R[$name.requests]:-0}" 'BEGIN{if(r>0) printf "%.0f", s*1e6/r; else print ""}')
	log "  $name: ${R[$name.rps]:-?} req/s  p50 ${R[$name.p50_ms]:-?} ms  p99 ${R[$name.p99_ms]:-?} ms  errors ${R[$name.errors]} (non2xx ${R[$name.non2xx]:-?} bad ${R[$name.bad]:-?})  members ${R[$name.srv_cpu_s]} CPU-s (${R[$name.cpu_us_per_req]} µs/req), wrk ${w} CPU-s, other processes ${R[$name.other_pct]}% of the machine, steal ${R[$name.steal_pct]}%"
}

# load S KEYS NAME: write every key once to the leader; wrk is stopped
# (SIGINT) when all its threads report done, at the latest after 900 s
load() {
	local s=$1 keys=$2 name=$3 dd p n url
	url=$(s_url "$s" "${LEAD[$s]}")
	dd=$(mktemp -d "$RES/.done.XXXXXX")
	log "load $name: $keys keys on $url"
	wrk -t"$THREADS" -c"$CONNS" -d900s --timeout 5s --latency \
		-s "$here/kv.lua" "$url" -- "$(s_api "$s")" load "$keys" "$THREADS" "$CONNS" "$dd" >"$RES/$name.txt" 2>&1 &
	p=$!
	PIDS+=("$p")
	for _ in $(seq 9100); do
		n=$(find "$dd" -name 'done.*' | wc -l)
		[ "$n" -ge "$THREADS" ] && break
		alive "$p" || break
		sleep 0.1
	done
	KILL_SIGNAL=INT stop_pids "$p"
	rm -rf "$dd"
	parse "$name" "$RES/$name.txt"
	R[$name.count]=$(s_count "$s" "${LEAD[$s]}")
	log "  $name: ${R[$name.rps]:-?} writes/s, errors ${R[$name.errors]}; keys under bench/ now: ${R[$name.count]}"
}

median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END{if(NR==0){print "";exit} print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

# aggregate S PH: the rounds' median of each figure into R[S.PH.*]; errors summed
aggregate() {
	local s=$1 ph=$2 f vals rd e=0
	for f in rps p50_ms p90_ms p99_ms max_ms cpu_us_per_req other_pct requests; do
		vals=""
		for rd in $(seq "$ROUNDS"); do vals+="${R[$s.$ph.r$rd.$f]:-} "; done
		R[$s.$ph.$f]=$(median <<<"$vals")
		R[$s.$ph.all_$f]=${vals% }
	done
	for rd in $(seq "$ROUNDS"); do
		[ -n "${R[$s.$ph.r$rd.errors]:-}" ] && e=$((e + ${R[$s.$ph.r$rd.errors]#-}))
	done
	R[$s.$ph.errors]=$e
}

# restart_one S: kill -9 a follower, start it again, time until a GET of a
# key answers 200 on it, with stale/serializable consistency (its own data
# is back) and with the default one
restart_one() {
	local s=$1 f=${FOLL[$1]} key="bench/$((RESTART_KEYS - 1))" t0 ts="" td="" deadline
	KILL_SIGNAL=KILL stop_pids "$(s_pid "$s" "$f")"
	t0=$(now_ms)
	s_start "$s" "$f"
	deadline=$((t0 + 60000))
	while [ "$(now_ms)" -lt $deadline ] && { [ -z "$ts" ] || [ -z "$td" ]; }; do
		[ -z "$ts" ] && s_get_ok "$s" "$f" "$key" 1 && ts=$(($(now_ms) - t0))
		[ -z "$td" ] && s_get_ok "$s" "$f" "$key" 0 && td=$(($(now_ms) - t0))
		sleep 0.01
	done
	log "  $s restart one: member $f stale GET 200 after ${ts:-never} ms, default GET 200 after ${td:-never} ms"
	R[$s.restart1.stale_ms]+="${ts:-NaN} "
	R[$s.restart1.default_ms]+="${td:-NaN} "
	s_wait "$s" || log "  $s: cluster did not settle"
}

# restart_all S: kill -9 all three, start all three, time until a GET of a
# key answers 200 on the former leader (default consistency needs a leader)
restart_all() {
	local s=$1 n=${LEAD[$1]} key="bench/$((RESTART_KEYS - 1))" t0 ts="" td="" i deadline
	s_crash_all "$s"
	t0=$(now_ms)
	for i in 1 2 3; do s_start "$s" "$i"; done
	deadline=$((t0 + 90000))
	while [ "$(now_ms)" -lt $deadline ] && { [ -z "$ts" ] || [ -z "$td" ]; }; do
		[ -z "$ts" ] && s_get_ok "$s" "$n" "$key" 1 && ts=$(($(now_ms) - t0))
		[ -z "$td" ] && s_get_ok "$s" "$n" "$key" 0 && td=$(($(now_ms) - t0))
		sleep 0.01
	done
	log "  $s restart all: member $n stale GET 200 after ${ts:-never} ms, default GET 200 after ${td:-never} ms"
	R[$s.restart3.stale_ms]+="${ts:-NaN} "
	R[$s.restart3.default_ms]+="${td:-NaN} "
	s_wait "$s" || log "  $s: cluster did not settle"
}

rss_all() { # S NAME: VmRSS of the three members
	local s=$1 name=$2 i
	for i in 1 2 3; do R[$s.$name.rss$i]=$(rss_kib "$(s_pid "$s" "$i")"); done
	R[$s.$name.rss_leader]=${R[$s.$name.rss${LEAD[$s]}]}
	R[$s.$name.rss_max]=$(printf '%s\n' "${R[$s.$name.rss1]}" "${R[$s.$name.rss2]}" "${R[$s.$name.rss3]}" | sort -n | tail -1)
	log "  $s VmRSS $name (KiB): m1 ${R[$s.$name.rss1]} m2 ${R[$s.$name.rss2]} m3 ${R[$s.$name.rss3]} (leader m${LEAD[$s]})"
}

# ---------------------------------------------------------------- run
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
etcdver=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
wrkver=$( (wrk -v 2>&1 || true) | head -1 | awk '{print $2}')
gitrev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo '+dirty' || true)
if [ "$NOBATCH_ARGS" = auto ]; then
	NOBATCH_ARGS=""
	flag=$("$AGENT" run -h 2>&1 | grep -oE -- '-[a-z0-9-]*batch[a-z0-9-]*' | head -1 || true)
	if [ -n "$flag" ]; then
		case "$flag" in *disable* | *no-*) NOBATCH_ARGS="$flag" ;; *) NOBATCH_ARGS="$flag=false" ;; esac
	fi
fi

log "results: $RES; data: $DATA ($fstype on $fsdev)"
log "machine: $NCPU cores, $cpu; etcd $etcdver; wrk $wrkver; agent $gitrev$dirty (sha256 $agentsum); load average $(cut -d' ' -f1-3 /proc/loadavg)"
UP=()
for s in $SYSTEMS; do s_up "$s" && UP+=("$s") || true; done
[ ${#UP[@]} -gt 0 ] || { log "nothing to measure"; exit 1; }
for s in "${UP[@]}"; do load "$s" "$KEYS" "$s.load"; done

PHASES="put:put:L get:get:L stale:stale:L"
[ "$VIA_FOLLOWER" = 1 ] && PHASES="put:put:L put_f:put:F get:get:L stale:stale:L get_f:get:F"
for rd in $(seq "$ROUNDS"); do
	order=("${UP[@]}")
	if [ $((rd % 2)) = 0 ]; then # ABBA: reverse the order every other round
		order=()
		for ((i = ${#UP[@]} - 1; i >= 0; i--)); do order+=("${UP[$i]}"); done
	fi
	for p in $PHASES; do
		IFS=: read -r ph op who <<<"$p"
		for s in "${order[@]}"; do
			if [ "$who" = L ]; then m=${LEAD[$s]}; else m=${FOLL[$s]}; fi
			log "phase $s.$ph round $rd: $op x ${DURATION}s on member $m"
			phase "$s" "$ph" "$op" "$m" "$rd"
		done
	done
done
for s in "${UP[@]}"; do
	for p in $PHASES; do aggregate "$s" "${p%%:*}"; done
	rss_all "$s" after10k
done

for s in "${UP[@]}"; do load "$s" "$RESTART_KEYS" "$s.load100k"; done
sleep 2
for s in "${UP[@]}"; do
	rss_all "$s" after100k
	R[$s.du]=$(du -sk "$DATA/$s" | cut -f1)
done
for _ in $(seq "$RESTARTS"); do for s in "${UP[@]}"; do restart_one "$s"; done; done
for _ in $(seq "$RESTARTS"); do for s in "${UP[@]}"; do restart_all "$s"; done; done
for s in "${UP[@]}"; do s_stop_all "$s"; done

# ours with raft's BatchApplyCh off (a separate cluster), writes only,
# interleaved with ours batching on (a fresh 3rd round of put)
if [[ " ${UP[*]} " == *" ours "* ]] && [ -n "$NOBATCH_ARGS" ]; then
	OURS_EXTRA=($NOBATCH_ARGS)
	log "=== ours with batching off: $NOBATCH_ARGS"
	if s_up ours_nb; then
		OURS_EXTRA=()
		load ours_nb "$KEYS" ours_nb.load
		for rd in $(seq "$ROUNDS"); do phase ours_nb put put "${LEAD[ours_nb]}" "$rd"; done
		aggregate ours_nb put
		s_stop_all ours_nb
	fi
	OURS_EXTRA=()
fi
gobench=""
if [ "$GOBENCH" = 1 ] && grep -qs 'func BenchmarkApplyParallel' kvstore/*_test.go; then
	log "go test -run '^\$' -bench ApplyParallel -benchtime ${GOBENCHTIME:-3s} ./kvstore"
	timeout 900 go test -run '^$' -bench 'ApplyParallel' -benchtime "${GOBENCHTIME:-3s}" ./kvstore >"$RES/go-bench.txt" 2>&1 || true
	gobench=$(grep -E '^Benchmark' "$RES/go-bench.txt" || true)
	[ -n "$gobench" ] || log "  go bench printed no result: see $RES/go-bench.txt"
fi

# ---------------------------------------------------------------- table
num() { [ -n "${1:-}" ] && awk -v x="$1" 'BEGIN{exit !(x==x+0)}'; }
fmt0() { num "${1:-}" && awk -v x="$1" 'BEGIN{printf "%.0f", x}' || echo "—"; }
fmt2() { num "${1:-}" && awk -v x="$1" 'BEGIN{printf "%.2f", x}' || echo "—"; }
fmtmib() { num "${1:-}" && [ "$1" != 0 ] && awk -v x="$1" 'BEGIN{printf "%.0f", x/1024}' || echo "—"; }
ratio() { # a b → a/b
	if num "${1:-}" && num "${2:-}" && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then
		awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f×", a/b}'
	else echo "—"; fi
}
errnote() { local e=${R[$1.errors]:-0}; [ "$e" != 0 ] && echo " ⚠ ${e} errors" || true; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5"; }
rounds() { # phase field: each round's figure, in small print
	[ "$ROUNDS" -gt 1 ] && [ -n "${R[$1.all_$2]:-}" ] || return 0
	echo " <sub>($(tr ' ' '\n' <<<"${R[$1.all_$2]}" | awk 'NF{printf "%s%.0f", (n++ ? " · " : ""), $1}'))</sub>"
}
rate_row() { # label phase goal
	local o=${R[ours.$2.rps]:-} e=${R[etcd.$2.rps]:-}
	row "$1" "$(fmt0 "$o")$(rounds "ours.$2" rps)$(errnote "ours.$2")" "$(fmt0 "$e")$(rounds "etcd.$2" rps)$(errnote "etcd.$2")" "$(ratio "$o" "$e")" "$3"
}
lat_row() { # label phase field
	local o=${R[ours.$2.$3]:-} e=${R[etcd.$2.$3]:-}
	row "$1" "$(fmt2 "$o")" "$(fmt2 "$e")" "$(ratio "$o" "$e")" "lower is better"
}
cpu_row() { # label phase
	local o=${R[ours.$2.cpu_us_per_req]:-} e=${R[etcd.$2.cpu_us_per_req]:-}
	row "$1" "$(fmt0 "$o")" "$(fmt0 "$e")" "$(ratio "$o" "$e")" "lower is better"
}
ms_row() { # label key goal
	local o e
	o=$(median <<<"${R[ours.$2]:-}")
	e=$(median <<<"${R[etcd.$2]:-}")
	row "$1" "$(fmt0 "$o")$([ -n "${R[ours.$2]:-}" ] && echo " <sub>(${R[ours.$2]% })</sub>")" "$(fmt0 "$e")$([ -n "${R[etcd.$2]:-}" ] && echo " <sub>(${R[etcd.$2]% })</sub>")" "$(ratio "$o" "$e")" "$3"
}
mem_row() { # label key goal
	row "$1" "$(fmtmib "${R[ours.$2]:-}")" "$(fmtmib "${R[etcd.$2]:-}")" "$(ratio "${R[ours.$2]:-}" "${R[etcd.$2]:-}")" "$3"
}
{
	echo "### K/V: Outrigger (3 servers) vs etcd $etcdver (3 members)"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $NCPU cores, $cpu, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
	echo "- command: \`$CMDLINE\` (agent $gitrev$dirty, binary sha256 $agentsum…, etcd $etcdver, wrk $wrkver)"
	echo "- load: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency with bench/kv/kv.lua: random keys among $KEYS (bench/<n>), 64-byte values, all $KEYS pre-loaded; to the leader unless marked *follower*; each phase run $ROUNDS× alternating the systems (ABBA), median shown (each round in small print)"
	echo "- both: 3 processes on 127.0.0.1, data on the same $fstype filesystem ($fsdev), fsync on (agent: raft-boltdb/bbolt; etcd: defaults); both clusters up side by side, the one not under load idle; wrk and the members share the $NCPU cores; etcd through its gRPC-gateway JSON API (/v3/kv/put, /v3/kv/range), ours through /v1/kv"
	echo
	echo "| measurement | Outrigger | etcd | ratio ours/etcd | goal |"
	echo "| --- | ---: | ---: | ---: | --- |"
	rate_row "writes/s (PUT, leader)" put "≥ 1.0×"
	lat_row "write p50 ms" put p50_ms
	lat_row "write p99 ms" put p99_ms
	cpu_row "write: members' CPU µs per write (3 members)" put
	if [ -n "${R[ours_nb.put.rps]:-}" ]; then
		row "writes/s, ours with batching off ($NOBATCH_ARGS)" "$(fmt0 "${R[ours_nb.put.rps]}")$(rounds ours_nb.put rps)$(errnote ours_nb.put)" "" "$(ratio "${R[ours_nb.put.rps]}" "${R[etcd.put.rps]:-}")" "batching on/off: $(ratio "${R[ours.put.rps]:-}" "${R[ours_nb.put.rps]}")"
		row "write p99 ms, batching off" "$(fmt2 "${R[ours_nb.put.p99_ms]:-}")" "" "" ""
	else
		row "writes/s, batching off" "n/a: no command-line switch" "" "" "see BenchmarkApplyParallel below"
	fi
	if [ "$VIA_FOLLOWER" = 1 ]; then
		rate_row "writes/s sent to a *follower*" put_f ""
		lat_row "write via follower p99 ms" put_f p99_ms
	fi
	rate_row "reads/s, default consistency (ours: leader confirms leadership; etcd: linearizable)" get "≥ 2.0×"
	lat_row "default read p50 ms" get p50_ms
	lat_row "default read p99 ms" get p99_ms
	cpu_row "default read: members' CPU µs per read" get
	rate_row "reads/s, stale (?stale / serializable)" stale ""
	lat_row "stale read p99 ms" stale p99_ms
	if [ "$VIA_FOLLOWER" = 1 ]; then
		rate_row "reads/s, default, sent to a *follower*" get_f ""
	fi
	mem_row "VmRSS MiB, leader, after $KEYS keys and all phases" after10k.rss_leader "lower is better"
	mem_row "VmRSS MiB, largest of 3, same point" after10k.rss_max ""
	mem_row "VmRSS MiB, leader, with $RESTART_KEYS keys" after100k.rss_leader ""
	mem_row "data on disk MiB, 3 members, $RESTART_KEYS keys" du ""
	rate_row "pre-load of $RESTART_KEYS keys, writes/s" load100k ""
	ms_row "restart (kill -9) one follower with $RESTART_KEYS keys: start → stale GET 200 on it, ms" restart1.stale_ms "< 2000"
	ms_row "same: start → default GET 200 on it, ms" restart1.default_ms ""
	ms_row "restart (kill -9) all 3: start → default GET 200, ms" restart3.default_ms ""
	ms_row "restart (kill -9) all 3: start → stale GET 200, ms" restart3.stale_ms ""
	echo
	echo "Restart figures: median of $RESTARTS, each in small print. Keys present after the pre-loads: ours ${R[ours.load.count]:-—} / ${R[ours.load100k.count]:-—}, etcd ${R[etcd.load.count]:-—} / ${R[etcd.load100k.count]:-—} (of $KEYS / $RESTART_KEYS)."
	oth=$(for k in "${!R[@]}"; do case $k in *.r[0-9]*.other_pct) echo "${R[$k]}" ;; esac; done | sort -n)
	[ -n "$oth" ] && echo "Other processes on the machine used $(head -1 <<<"$oth")–$(tail -1 <<<"$oth") % of its CPU during the timed phases (median $(median <<<"$(tr '\n' ' ' <<<"$oth")") %)."
	for s in $SYSTEMS; do [ -n "${R[$s.failed]:-}" ] && echo "**$s not measured: ${R[$s.failed]}**"; done
	bad=0
	for k in $(printf '%s\n' "${!R[@]}" | grep '\.errors$' | sort); do
		b=${k%.errors}
		if [ "${R[$k]}" != 0 ] && [ -n "${R[$b.non2xx]:-}${R[$b.errors]}" ] && [[ $b != *.put && $b != *.get && $b != *.stale && $b != *.put_f && $b != *.get_f ]]; then
			echo "- ⚠ errors in $b: ${R[$k]} (non-2xx ${R[$b.non2xx]:-?}, bad body ${R[$b.bad]:-?}, socket connect/read/write/timeout ${R[$b.sock_connect]:-?}/${R[$b.sock_read]:-?}/${R[$b.sock_write]:-?}/${R[$b.sock_timeout]:-?}) — not a valid measurement"
			bad=1
		fi
	done
	[ $bad = 0 ] && echo "Every wrk run: 0 non-2xx, 0 unexpected bodies, 0 socket errors."
	if [ -n "$gobench" ]; then
		echo
		echo "kvstore \`go test -bench ApplyParallel -benchtime ${GOBENCHTIME:-3s}\` (3 in-process servers over TCP, bolt, fsync on; 32×GOMAXPROCS clients):"
		echo
		echo '```'
		echo "$gobench"
		echo '```'
	fi
} >"$RES/table.md"
echo
cat "$RES/table.md"
for k in $(printf '%s\n' "${!R[@]}" | sort); do echo "$k=${R[$k]}"; done >"$RES/results.txt"
log "raw output: $RES"
rc=0
for s in $SYSTEMS; do [ -n "${R[$s.failed]:-}" ] && rc=1; done
[ $bad = 0 ] || rc=1
exit $rc
