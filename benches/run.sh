#!/usr/bin/env bash
# The proxy benchmark, one command: bash benches/run.sh
# Installs what it needs (Debian packages), builds s3chaos in release mode, and prints one
# table comparing s3chaos with direct access, nginx and HAProxy. About 5 minutes on 2 cores.
# S3CHAOS_BENCH_QUICK=1 runs a shorter version (one round, 1,000 blackholes).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in wrk nginx haproxy curl h2load; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for t in "${need[@]}"; do case "$t" in nginx) pkgs+=(nginx-light);; h2load) pkgs+=(nghttp2-client);; *) pkgs+=("$t");; esac; done
  echo "installing ${pkgs[*]} ..." >&2
  apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
cargo build --release --locked --features bench --bin s3chaos --bin s3chaos-bench
exec target/release/s3chaos-bench
