#!/usr/bin/env bash
# The Fenceline story end to end on embedded defaults, on this machine:
#   a firewall (a network namespace with a real router ruleset), an aggregator with its
#   embedded MQTT broker, an enrolled agent, an approved change, and changes nobody
#   approved. Ends with the table of deviations. Cleans up after itself.
#
# Needs root (network namespaces, nftables). `make demo` installs dependencies and builds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
work=$(mktemp -d /tmp/fenceline-demo.XXXXXX)
ns=fl-demo-$$
tenant=acme
device=fw-branch-1
api_port=${FENCELINE_DEMO_API_PORT:-8443}
mqtt_port=${FENCELINE_DEMO_MQTT_PORT:-1883}
raft_port=${FENCELINE_DEMO_RAFT_PORT:-7000}
api=http://127.0.0.1:$api_port

# A real ruleset written by someone who runs a router; a copy ships in configs/ for
# machines without the shared corpus.
ruleset=$root/../shared/corpus/nft/user-linux-wireless-router.nft
[ -f "$ruleset" ] || ruleset=$root/configs/demo/router.nft

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

for port in "$api_port" "$mqtt_port" "$raft_port"; do
	if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
		echo "port $port on 127.0.0.1 is in use; set FENCELINE_DEMO_{API,MQTT,RAFT}_PORT" >&2
		exit 1
	fi
done

say "A firewall: network namespace $ns with the ruleset $(basename "$ruleset")"
ip netns add "$ns"
ip -n "$ns" link set lo up
fnft -f "$ruleset"
fnft -s list ruleset >"$work/initial.nft"
head -n 16 "$work/initial.nft"
echo "	…  ($(grep -c '' "$work/initial.nft") lines)"

say "The aggregator: one raft node, embedded MQTT broker on 127.0.0.1:$mqtt_port"
"$bin/fenceline-aggregator" --config "$root/configs/aggregator.yaml" --data-dir "$work/aggregator" \
	--http-listen "127.0.0.1:$api_port" --raft-listen "127.0.0.1:$raft_port" \
	--embedded-broker-listen "127.0.0.1:$mqtt_port" >"$work/aggregator.log" 2>&1 &
pids+=($!)
wait_for 30 "aggregator" curl -fsS "$api/healthz"
wait_for 10 "admin token" test -s "$work/aggregator/admin.token"

say "Enroll the agent with a one-time token, and start it watching the firewall"
token=$(ctl enroll --device "$device" -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
echo "fencectl enroll --device $device  →  token ${token:0:8}…"
"$bin/fenceline-agent" run --config "$root/configs/agent.yaml" --state-dir "$work/agent" \
	--aggregator "$api" --token "$token" --netns "$ns" >"$work/agent.log" 2>&1 &
pids+=($!)
wait_for 30 "baseline" sh -c "'$bin/fencectl' --server '$api' --token-file '$work/aggregator/admin.token' --tenant $tenant device history $device -o json | grep -q baseline"
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

say "Reloading the same ruleset file is not a change"
echo "# nft -f (flush ruleset + the current ruleset)"
{ echo "flush ruleset"; fnft -s list ruleset; } >"$work/current.nft"
fnft -f "$work/current.nft"

wait_for 10 "three deviations" sh -c "[ \$('$bin/fencectl' --server '$api' --token-file '$work/aggregator/admin.token' --tenant $tenant deviations -o json | grep -c '\"unauthorized\"') -ge 3 ]"
say "Device history"
ctl device history "$device"
say "Deviations"
ctl deviations
