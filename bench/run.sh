#!/usr/bin/env bash
# bench/run.sh — runs every bench/*/run.sh in turn (each builds what it needs
# or says how). Exits non-zero if any of them did.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for s in bench/*/run.sh; do
	echo "=== $s"
	bash "$s" || { echo "=== $s failed ($?)"; rc=1; }
done
exit $rc
