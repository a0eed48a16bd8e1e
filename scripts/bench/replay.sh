#!/usr/bin/env bash
# Offline replay benchmark (method in scripts/bench/README.md). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
go run ./scripts/bench/replay "$@"
