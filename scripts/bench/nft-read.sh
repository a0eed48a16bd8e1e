#!/usr/bin/env bash
# nftables read benchmark (method in scripts/bench/README.md, "nftables read"). Needs root.
#   scripts/bench/nft-read.sh                 # 1 chain x 100k and 100 chains x 1000 rules
#   scripts/bench/nft-read.sh idle            # agent idle CPU with 10k rules over 60 s
#   scripts/bench/nft-read.sh -rules 20000 -chains 10   # any other shape
set -euo pipefail
cd "$(dirname "$0")/../.."
go build -o /tmp/fl-nftread.$$ ./scripts/bench/nftread
trap 'rm -f /tmp/fl-nftread.$$' EXIT
if [ "${1:-}" = idle ]; then
	shift
	exec /tmp/fl-nftread.$$ -mode idle -rules 10000 -idle 60s "$@"
fi
if [ $# -gt 0 ]; then
	/tmp/fl-nftread.$$ -mode read "$@"
	exit
fi
/tmp/fl-nftread.$$ -mode read -rules 100000 -chains 1
/tmp/fl-nftread.$$ -mode read -rules 100000 -chains 100
