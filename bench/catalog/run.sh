#!/usr/bin/env bash
# bench/catalog/run.sh — issue #4's "Numbers" for the service catalog:
#   1. registration on client a -> visible in client b's DNS (local view),
#      5-agent process cluster (3 servers + 2 clients);
#   2. client a killed (kill -9) -> out of every other agent's DNS and
#      ?passing, next to gossip's failure detection;
#   3. 10,000 instances (100 nodes x 100 services) on 3 real servers, with
#      29 real client agents: client memory by services used, one change to
#      every subscribed view, answers per change, watchers of other
#      services not woken, and the servers' cost of W simulated agents.
# Builds the agent and the two programs into a temporary directory, runs
# them and prints their output (the RESULT lines carry the figures).
#
# Environment: N (registrations, 200), KILLS (5), CHANGES (20),
# WATCHERS (1000), IDLERS (1000: simulated agents watching services that do
# not change, for the wake-up cost), NODES (100), BIG=1 also runs the scale program with 200
# nodes (20,000 instances), AGENT=path uses that binary instead of building,
# KEEP=1 keeps the temporary directory (agent logs), PROP=0 skips the
# propagation program, SCALE=0 the 10,000-instance scale run.
# Takes about 6 minutes (9 with BIG=1) on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200}
KILLS=${KILLS:-5}
CHANGES=${CHANGES:-20}
WATCHERS=${WATCHERS:-1000}
IDLERS=${IDLERS:-1000}
NODES=${NODES:-100}
BIG=${BIG:-0}
PROP=${PROP:-1}
SCALE=${SCALE:-1}
tmp=$(mktemp -d /tmp/catbench-XXXXXX)
trap '[ "${KEEP:-0}" = 1 ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
agent=${AGENT:-}
if [ -z "$agent" ]; then
	agent=$tmp/agent
	CGO_ENABLED=0 go build -trimpath -o "$agent" ./cmd/agent
fi
go build -o "$tmp/propagation" ./bench/catalog/propagation
go build -o "$tmp/scale" ./bench/catalog/scale

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+dirty" || true)
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
echo "agent: $rev$dirty, sha256 $(sha256sum "$agent" | cut -c1-12)"
echo "uptime: $(uptime)"
echo "command: N=$N KILLS=$KILLS CHANGES=$CHANGES WATCHERS=$WATCHERS IDLERS=$IDLERS NODES=$NODES BIG=$BIG PROP=$PROP SCALE=$SCALE bench/catalog/run.sh"

if [ "$PROP" = 1 ]; then
	echo
	echo "=== propagation (5-agent cluster)"
	"$tmp/propagation" -agent "$agent" -dir "$tmp/prop" -n "$N" -kills "$KILLS"
	echo "uptime: $(uptime)"
fi

if [ "$SCALE" = 1 ]; then
	echo
	echo "=== scale ($NODES nodes x 100 services)"
	"$tmp/scale" -agent "$agent" -dir "$tmp/scale-run" -nodes "$NODES" -changes "$CHANGES" -watchers "$WATCHERS" -idlers "$IDLERS"
	echo "uptime: $(uptime)"
fi

if [ "$BIG" = 1 ]; then
	echo
	echo "=== scale (200 nodes x 100 services = 20,000 instances)"
	"$tmp/scale" -agent "$agent" -dir "$tmp/scale-big" -nodes 200 -changes "$CHANGES" -watchers "$WATCHERS" -idlers "$IDLERS"
	echo "uptime: $(uptime)"
fi
