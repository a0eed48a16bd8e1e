#!/usr/bin/env bash
# Detection latency benchmark (method in scripts/bench/README.md). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
go run ./scripts/bench/detectlat "$@"
