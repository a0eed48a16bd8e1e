#!/usr/bin/env bash
# Installs what Fenceline's demo and tests need on Debian 12, as root. Idempotent:
# packages already present are not touched and the script exits quickly.
set -euo pipefail

pkgs=(nftables mosquitto mosquitto-clients snmpd snmp snmpsim snmptrapd iproute2 iputils-ping
      netcat-openbsd ca-certificates)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Keep package maintainer scripts from starting system-wide daemons (mosquitto, snmpd):
	# tests start their own instances on loopback ports they choose.
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "deps.sh: Go 1.26 is required (expected at /usr/local/go)" >&2
	exit 1
fi
