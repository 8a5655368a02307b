#!/usr/bin/env bash
# Benchmarks Sallyport against the direct path on loopback and writes
# docs/BENCHMARKS.md. Knobs: BENCH_BYTES (default 1 GiB), BENCH_ROUNDS (2),
# BENCH_ECHO (2000 round trips), BENCH_SETUP (100 sessions), BENCH_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/sshd ] || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get update -qq; DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server openssh-client >/dev/null; }
cargo build --locked --release --workspace --bins
exec target/release/sallyport-bench
