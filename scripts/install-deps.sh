#!/usr/bin/env bash
# Installs the Debian packages that `make test` uses, when they are missing.
# Needs root and apt-get; without them it prints what is missing and the
# tests that need those tools skip with the reason printed.
set -u
need=()
have() { command -v "$1" >/dev/null 2>&1; }
# command:package pairs the tests use.
for pair in dig:bind9-dnsutils curl:curl haproxy:haproxy nginx:nginx-light; do
	cmd=${pair%%:*}; pkg=${pair#*:}
	have "$cmd" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! have apt-get; then
	echo "install-deps: missing ${need[*]} and cannot install (need root and apt-get); tests using them will skip" >&2
	exit 0
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || echo "install-deps: apt-get update failed" >&2
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || echo "install-deps: apt-get install ${need[*]} failed; tests using them will skip" >&2
exit 0
