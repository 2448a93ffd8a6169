#!/usr/bin/env bash
# Runs go test verbosely into a log, then prints what a reader needs:
# every skipped test with its reason, the package summaries, and on
# failure the whole log. Exits with go test's status.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
go test -v "$@" >"$log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
	cat "$log"
	# Repeat the failures last, so the tail of a CI log names them.
	echo
	echo "=== failures (summary) ==="
	grep -E -A12 -- '^\s*--- FAIL|^panic:|^fatal error:|DATA RACE|test timed out' "$log" | head -150
	grep -E '^(ok|FAIL|\?)\s' "$log"
	exit "$status"
fi
grep -E -B3 -- '^\s*--- SKIP' "$log" | grep -vE '^(--$|=== (RUN|PAUSE|CONT)|\s*--- PASS)' || true
grep -E '^(ok|FAIL|\?)\s' "$log"
exit 0
