#!/usr/bin/env bash
# Idle RSS of a client agent beside a three-server cluster on loopback.
# Usage: bench/rss/run.sh [seconds-idle]   (needs bin/agent: make build)
# Prints VmRSS and VmHWM (peak) of every agent after the cluster idled.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=${1:-30}
bin=bin/agent
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
names=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
start_agent() { # name index extra-args...
	local name=$1 i=$2; shift 2
	local off=$((base + i * 10))
	"$bin" run -node "$name" -bind 127.0.0.1 -serf-port $((off + 1)) -server-port $((off + 2)) \
		-http-port $((off + 3)) -dns-port $((off + 4)) -data-dir "$tmp/$name" -log-level warn \
		-retry-join "127.0.0.1:$((base + 10 + 1))" -retry-interval 200ms "$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}
for i in 1 2 3; do start_agent "server$i" "$i" -server -bootstrap-expect 3; done
start_agent client1 4
http="127.0.0.1:$((base + 40 + 3))"
for _ in $(seq 150); do
	n=$("$bin" members -http-addr "$http" 2>/dev/null | grep -c alive || true)
	leader=$(curl -s "http://$http/v1/status/leader" 2>/dev/null || true)
	[ "$n" = 4 ] && [ -n "$leader" ] && [ "$leader" != '""' ] && break
	sleep 0.2
done
echo "cluster formed ($n alive, leader $leader); idling ${idle}s"
sleep "$idle"
printf '%-8s %10s %10s\n' agent VmRSS VmHWM
for i in "${!pids[@]}"; do
	p=${pids[$i]}
	rss=$(awk '/VmRSS/{print $2}' /proc/"$p"/status)
	hwm=$(awk '/VmHWM/{print $2}' /proc/"$p"/status)
	awk -v n="${names[$i]}" -v r="$rss" -v h="$hwm" 'BEGIN{printf "%-8s %6.1f MiB %6.1f MiB\n", n, r/1024, h/1024}'
done
