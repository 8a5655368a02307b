#!/usr/bin/env bash
# Runs every Sallyport check and test on this machine, installing what the
# tests need (OpenSSH, curl, docker-compose from Debian's packages) when it is
# missing. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v curl >/dev/null || missing+=(curl)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

echo "== format, lints"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== one crypto provider (ring) in the build"
if cargo tree --locked -e normal -i aws-lc-rs >/dev/null 2>&1; then
    echo "aws-lc-rs is in the dependency tree; only ring may be" >&2
    exit 1
fi

echo "== docker-compose.yml"
docker-compose -f docker-compose.yml config -q

echo "== tests"
# The end-to-end tests start the binaries, so build them first.
cargo build --locked --workspace --bins
cargo nextest run --locked --workspace --no-fail-fast
