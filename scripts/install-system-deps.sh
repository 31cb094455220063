#!/usr/bin/env bash
# Debian packages the tests, the model check and the benchmarks use: PgBouncer (scale-out
# tests), Spin and gcc (model/), Chromium and its driver (the buyer-journey browser test),
# postgresql-client's pgbench (bench/), the PostgreSQL server and iproute2 + iptables (servers the
# partition and failover tests make themselves, in network namespaces of their own).
# Idempotent: installs only what is missing. Needs root.
set -euo pipefail
wanted=(pgbouncer spin gcc chromium chromium-driver postgresql-client postgresql iproute2 iptables)
missing=()
for pkg in "${wanted[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-system-deps: missing ${missing[*]}; run this script as root (apt-get)" >&2
	exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
