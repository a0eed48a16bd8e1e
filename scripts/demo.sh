#!/usr/bin/env bash
# The Fenceline story end to end on embedded defaults, on this machine:
#   a firewall (a network namespace with a real router ruleset), a Cisco device beside it
#   watched over SNMP (snmpsim serving a real device's recording), an aggregator with its
#   embedded MQTT broker, an enrolled agent, an approved change, and changes nobody
#   approved on both. Ends with the table of deviations. Cleans up after itself.
#
# Needs root (network namespaces, nftables). `make demo` installs dependencies and builds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
ns=fl-demo-$$
tenant=acme
device=fw-branch-1
api_port=${FENCELINE_DEMO_API_PORT:-8443}
mqtt_port=${FENCELINE_DEMO_MQTT_PORT:-1883}
raft_port=${FENCELINE_DEMO_RAFT_PORT:-7000}
snmp_port=${FENCELINE_DEMO_SNMP_PORT:-1161}   # UDP: snmpsim, the Cisco device
trap_port=${FENCELINE_DEMO_TRAP_PORT:-10162}  # UDP: the agent's trap listener
snmp_device=cisco-core-1
api=http://127.0.0.1:$api_port

# A real ruleset written by someone who runs a router; a copy ships in configs/ for
# machines without the shared corpus.
ruleset=$root/../shared/corpus/nft/user-linux-wireless-router.nft
[ -f "$ruleset" ] || ruleset=$root/configs/demo/router.nft
# The SNMP view of a Cisco Catalyst 3750 (system, interfaces, addresses, routes and the
# CISCO-CONFIG-MAN-MIB change scalars of snmpsim's cisco_16_switch recording, BSD-2).
recording=$root/configs/demo/cisco-switch.snmprec

for port in "$api_port" "$mqtt_port" "$raft_port"; do
	if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
		echo "port $port on 127.0.0.1 is in use; set FENCELINE_DEMO_{API,MQTT,RAFT}_PORT" >&2
		exit 1
	fi
done
for port in "$snmp_port" "$trap_port"; do
	if [ -n "$(ss -Hlun "sport = :$port")" ]; then
		echo "UDP port $port is in use; set FENCELINE_DEMO_{SNMP,TRAP}_PORT" >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/fenceline-demo.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	ip netns del "$ns" 2>/dev/null || true
	echo
	echo "logs kept in $work"
}
trap cleanup EXIT

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
fnft() { ip netns exec "$ns" nft "$@"; }
ctl() { "$bin/fencectl" --server "$api" --token-file "$work/aggregator/admin.token" --tenant "$tenant" "$@"; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	for _ in $(seq $((secs * 10))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $what" >&2
	return 1
}

say "A firewall: network namespace $ns with the ruleset $(basename "$ruleset")"
ip netns add "$ns"
ip -n "$ns" link set lo up
fnft -f "$ruleset"
fnft -s list ruleset >"$work/initial.nft"
head -n 16 "$work/initial.nft"
echo "	…  ($(grep -c '' "$work/initial.nft") lines)"

say "A Cisco device beside it, answering SNMP on 127.0.0.1:$snmp_port (snmpsim)"
mkdir -p "$work/snmpsim/data" "$work/snmpsim/cache"
cp "$recording" "$work/snmpsim/data/demo.snmprec"
snmpsimd --data-dir="$work/snmpsim/data" --cache-dir="$work/snmpsim/cache" \
	--agent-udpv4-endpoint="127.0.0.1:$snmp_port" --process-user=root --process-group=root \
	--logging-method=stdout >"$work/snmpsim.log" 2>&1 &
pids+=($!)
snmp_up() { snmpgetnext -v2c -c demo -t 0.3 -r 0 "127.0.0.1:$snmp_port" 1.3.6.1; }
wait_for 30 "snmpsim" snmp_up
snmpget -v2c -c demo -On "127.0.0.1:$snmp_port" 1.3.6.1.2.1.1.1.0 | cut -c1-100

say "The aggregator: one raft node, embedded MQTT broker on 127.0.0.1:$mqtt_port"
"$bin/fenceline-aggregator" --config "$root/configs/aggregator.yaml" --data-dir "$work/aggregator" \
	--http-listen "127.0.0.1:$api_port" --raft-listen "127.0.0.1:$raft_port" \
	--embedded-broker-listen "127.0.0.1:$mqtt_port" >"$work/aggregator.log" 2>&1 &
pids+=($!)
wait_for 30 "aggregator" curl -fsS "$api/healthz"
wait_for 10 "admin token" test -s "$work/aggregator/admin.token"

say "Enroll both devices with one-time tokens; one agent watches the firewall and the Cisco"
token=$(ctl enroll --device "$device" -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
echo "fencectl enroll --device $device  →  token ${token:0:8}…"
snmp_token=$(ctl enroll --device "$snmp_device" -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
echo "fencectl enroll --device $snmp_device  →  token ${snmp_token:0:8}…"
{
	cat "$root/configs/agent.yaml"
	cat <<EOF

snmp:
  trap_listen: 127.0.0.1:$trap_port
  targets:
    - name: $snmp_device
      enroll_token: $snmp_token
      address: 127.0.0.1:$snmp_port
      community: demo
      profile: cisco-ios
EOF
} >"$work/agent.yaml"
"$bin/fenceline-agent" run --config "$work/agent.yaml" --state-dir "$work/agent" \
	--aggregator "$api" --token "$token" --netns "$ns" >"$work/agent.log" 2>&1 &
pids+=($!)
history_has() { # history_has DEVICE PATTERN
	"$bin/fencectl" --server "$api" --token-file "$work/aggregator/admin.token" --tenant "$tenant" \
		device history "$1" -o json | grep -q "$2"
}
wait_for 30 "baseline" history_has "$device" baseline
wait_for 30 "SNMP baseline" history_has "$snmp_device" baseline
ctl device list

say "A change request: open HTTPS from the LAN, approved by someone else"
start=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
cr=$(ctl cr create --device "$device" --title "Open HTTPS to the LAN" --requester alice \
	--window-start "$start" --window-end "$end" \
	--add 'ip filter TCP|iifname "br0" tcp dport 443 counter accept' -o json |
	sed -n 's/^  "id": *"\([^"]*\)".*/\1/p' | head -1)
ctl cr approve "$cr" --approver bob >/dev/null
ctl cr list

say "The engineer implements it in the window"
echo '# nft add rule ip filter TCP iifname "br0" tcp dport 443 counter accept'
fnft add rule ip filter TCP iifname '"br0"' tcp dport 443 counter accept
wait_for 10 "CR implemented" sh -c "'$bin/fencectl' --server '$api' --token-file '$work/aggregator/admin.token' --tenant $tenant cr show $cr -o json | grep -q '\"implemented\"'"
ctl cr list

say "…and, while in the console, changes nobody approved"
echo '# nft add rule ip filter input tcp dport 23 accept'
fnft add rule ip filter input tcp dport 23 accept
echo '# nft insert rule ip filter forward iifname "wan0" accept'
fnft insert rule ip filter forward iifname '"wan0"' accept
h=$(fnft -a list chain ip filter input | sed -n 's/.*ct state invalid counter.*# handle \([0-9]*\)$/\1/p')
echo "# nft delete rule ip filter input handle $h    (ct state invalid counter drop)"
fnft delete rule ip filter input handle "$h"

say "On the Cisco, someone shuts interface Vlan60 and the device sends its config trap"
echo "# (the recording changes: ifAdminStatus.60 up → down, ccmHistoryRunningLastChanged moves)"
sed -e 's/^1\.3\.6\.1\.2\.1\.2\.2\.1\.7\.60|2|1$/1.3.6.1.2.1.2.2.1.7.60|2|2/' \
	-e 's/^1\.3\.6\.1\.4\.1\.9\.9\.43\.1\.1\.1\.0|67|[0-9]*$/1.3.6.1.4.1.9.9.43.1.1.1.0|67|464999999/' \
	"$recording" >"$work/snmpsim/data/demo.snmprec.new"
# snmpsim re-indexes a recording whose file is newer than its index.
touch -d '+2 seconds' "$work/snmpsim/data/demo.snmprec.new"
mv "$work/snmpsim/data/demo.snmprec.new" "$work/snmpsim/data/demo.snmprec"
wait_for 30 "snmpsim" snmp_up
echo "# snmptrap ccmCLIRunningConfigChanged (user carol) → 127.0.0.1:$trap_port"
snmptrap -v 2c -c demo "127.0.0.1:$trap_port" '' 1.3.6.1.4.1.9.9.43.2.0.2 \
	1.3.6.1.4.1.9.9.43.1.1.6.1.8.200 s carol

say "Reloading the same ruleset file is not a change"
echo "# nft -f (flush ruleset + the current ruleset)"
{ echo "flush ruleset"; fnft -s list ruleset; } >"$work/current.nft"
fnft -f "$work/current.nft"

wait_for 10 "three deviations" sh -c "[ \$('$bin/fencectl' --server '$api' --token-file '$work/aggregator/admin.token' --tenant $tenant deviations --device $device -o json | grep -c '\"unauthorized\"') -ge 3 ]"
wait_for 10 "the Cisco's deviation" sh -c "'$bin/fencectl' --server '$api' --token-file '$work/aggregator/admin.token' --tenant $tenant deviations --device $snmp_device -o json | grep -q unauthorized"
say "Device history: $device (nftables)"
ctl device history "$device"
say "Device history: $snmp_device (SNMP)"
ctl device history "$snmp_device"
say "Deviations"
ctl deviations
