#!/usr/bin/env bash
# Three fenceline-aggregator nodes on loopback (127.0.0.11-13) with a real Mosquitto:
# the first bootstraps, the others join it; a write through a follower is forwarded to
# the leader; the leader is killed and the cluster elects another that has every write.
# Cleans up after itself (pass --keep to leave it running until Ctrl-C).
#
# `make demo-cluster` builds first. Needs mosquitto (scripts/deps.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
work=$(mktemp -d /tmp/fenceline-demo-cluster.XXXXXX)
mqtt_port=${FENCELINE_DEMO_MQTT_PORT:-18830}
token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
keep=${1:-}

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	echo
	echo "logs kept in $work"
}
trap cleanup EXIT

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
api() { echo "http://127.0.0.1$1:8443"; }
ctl() { local n=$1; shift; "$bin/fencectl" --server "$(api "$n")" --token "$token" --tenant acme "$@"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	for _ in $(seq $((secs * 10))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "timed out waiting for $what" >&2
	return 1
}

for n in 1 2 3; do
	if (exec 3<>/dev/tcp/127.0.0.1$n/8443) 2>/dev/null; then
		echo "127.0.0.1$n:8443 is in use" >&2
		exit 1
	fi
done

say "Mosquitto on 127.0.0.1:$mqtt_port (a cluster needs an external broker)"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
wait_for 10 mosquitto bash -c "exec 3<>/dev/tcp/127.0.0.1/$mqtt_port"

start_node() { # start_node N [--join URL]
	local n=$1; shift
	FENCELINE_HTTP_ADMIN_TOKEN=$token "$bin/fenceline-aggregator" --config "$root/configs/aggregator.yaml" \
		--data-dir "$work/node-$n" --node-id "aggregator-$n" \
		--http-listen "127.0.0.1$n:8443" --raft-listen "127.0.0.1$n:7000" \
		--broker-url "tcp://127.0.0.1:$mqtt_port" "$@" >>"$work/node-$n.log" 2>&1 &
	pids+=($!)
	eval "pid_$n=$!"
}

say "Node 1 bootstraps the cluster; nodes 2 and 3 join it (--join)"
start_node 1
wait_for 30 "node 1" curl -sf "$(api 1)/healthz"
start_node 2 --join "$(api 1)"
start_node 3 --join "$(api 1)"
wait_for 30 "three members" bash -c "'$bin/fencectl' --server '$(api 1)' --token '$token' cluster status -o json | grep -c '\"suffrage\": \"voter\"' | grep -qx 3"
ctl 2 cluster status

say "Device fw-branch-1 enrolled (a CR may only target enrolled devices; its key made with openssl, no agent runs here)"
enroll_token=$(ctl 1 enroll --device fw-branch-1 -o json | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
pub=$(openssl genpkey -algorithm ed25519 | openssl pkey -pubout -outform DER | tail -c 32 | base64)
curl -sf -X POST -H 'Content-Type: application/json' \
	-d "{\"token\":\"$enroll_token\",\"public_key\":\"$pub\"}" "$(api 1)/v1/enroll" >/dev/null

say "A change request written through follower node 3 (forwarded to the leader)"
ctl 3 cr create --id CR-DEMO-1 --device fw-branch-1 --title "Open HTTPS" --requester alice \
	--window-start now --window-end +2h --add 'inet filter input|tcp dport 443 accept'
ctl 2 cr approve CR-DEMO-1 --approver bob

leader=$(ctl 1 cluster status -o json | sed -n 's/.*"id": "aggregator-\([0-9]\)".*/\1/p' | head -1)
say "kill -9 the leader (aggregator-$leader)"
eval "kill -9 \$pid_$leader"
others=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | head -1)
wait_for 30 "a new leader" curl -sf -H "Authorization: Bearer $token" \
	"$(api "$others")/v1/tenants/acme/crs/CR-DEMO-1?consistent=true"
ctl "$others" cluster status
say "The approved change request, read linearizably from the new cluster"
curl -sf -H "Authorization: Bearer $token" "$(api "$others")/v1/tenants/acme/crs/CR-DEMO-1?consistent=true" |
	grep -E '"(id|state)"'

if [ "$keep" = "--keep" ]; then
	say "running; Ctrl-C stops the cluster"
	wait
fi
