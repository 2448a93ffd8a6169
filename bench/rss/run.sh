#!/usr/bin/env bash
# Idle RSS of a client agent in a three-agent cluster on loopback.
# Usage: bench/rss/run.sh [seconds-idle]   (needs bin/agent: make build)
# Prints VmRSS (and VmHWM) of each agent after the cluster has been idle.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=${1:-30}
bin=bin/agent
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
for i in 1 2 3; do
	off=$((base + i * 10))
	args=(run -node "rss$i" -bind 127.0.0.1 -serf-port $((off + 1)) -server-port $((off + 2)) \
		-http-port $((off + 3)) -dns-port $((off + 4)) -data-dir "$tmp/n$i" -log-level warn)
	[ "$i" -gt 1 ] && args+=(-retry-join "127.0.0.1:$((base + 10 + 1))" -retry-interval 200ms)
	"$bin" "${args[@]}" >"$tmp/n$i.log" 2>&1 &
	pids+=($!)
done
for _ in $(seq 100); do
	n=$("$bin" members -http-addr "127.0.0.1:$((base + 10 + 3))" 2>/dev/null | grep -c alive || true)
	[ "$n" = 3 ] && break
	sleep 0.2
done
echo "cluster formed ($n alive); idling ${idle}s"
sleep "$idle"
printf '%-6s %10s %10s\n' agent VmRSS VmHWM
for i in 1 2 3; do
	p=${pids[$((i - 1))]}
	rss=$(awk '/VmRSS/{print $2}' /proc/"$p"/status)
	hwm=$(awk '/VmHWM/{print $2}' /proc/"$p"/status)
	awk -v n="rss$i" -v r="$rss" -v h="$hwm" 'BEGIN{printf "%-6s %7.1f MiB %7.1f MiB\n", n, r/1024, h/1024}'
done
