#!/usr/bin/env bash
# Detection latency of the agent alone (method in scripts/bench/README.md, "nftables
# detection latency"): from `nft add rule` returning to the signed change event being in
# the agent's outbox. Needs root (network namespaces) and the shared corpus.
#   scripts/bench/nft-detect.sh          # 200 commits on each ruleset
#   scripts/bench/nft-detect.sh 1000     # another count
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200}
uptime
go test ./agent/ -run '^$' -bench '^BenchmarkDetectLatency$' -benchtime "${n}x" -count=1 -timeout 30m
