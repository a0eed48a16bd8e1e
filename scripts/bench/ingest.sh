#!/usr/bin/env bash
# Cluster ingest benchmark (method in scripts/bench/README.md). Needs root and mosquitto.
set -euo pipefail
cd "$(dirname "$0")/../.."
go run ./scripts/bench/ingest "$@"
