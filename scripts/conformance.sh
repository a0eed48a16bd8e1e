#!/usr/bin/env bash
# Conformance of the agent's nftables reading with nft itself, over every group of the
# shared corpus (../shared/corpus/nft): curated rulesets, BIG-* rulesets, the nftables
# project's tests/py rebuilt as rulesets, and its shell-test dumps. Each file is loaded
# into a fresh network namespace, listed with `nft -s` and read by agent/nft; the report
# with figures per group and every mismatch goes to agent/nft/CONFORMANCE.md (or $1).
#
# Needs root (network namespaces) and nft; takes about half a minute.
# Usage: scripts/conformance.sh [REPORT] [GROUPS]   (GROUPS: all, or e.g. curated,pytests)
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(realpath -m "${1:-agent/nft/CONFORMANCE.md}")
groups=${2:-all}
go test ./agent/nft/ -run '^TestConformance$' -count=1 -timeout 20m \
	-nft.groups="$groups" -nft.report="$report" "${@:3}"
echo "report: $report"
