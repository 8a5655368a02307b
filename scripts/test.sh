#!/usr/bin/env bash
# Runs every Sallyport check and test on this machine, installing what the
# tests need (OpenSSH, curl, docker-compose, Chromium, asciinema from Debian's packages;
# playwright-core from npm) when it is missing. This is the README's test
# command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v curl >/dev/null || missing+=(curl)
command -v docker-compose >/dev/null || missing+=(docker-compose)
# The browser tests: Debian's Chromium, driven from Node.js (these machines
# ship Node.js 20 and npm; Debian's own is the fallback).
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
# Recordings are checked with the asciinema player itself.
command -v asciinema >/dev/null || missing+=(asciinema)
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
# The library docs: every public item documented (missing_docs, in the
# lints above) and every intra-doc link resolving.
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet \
    -p sallyport-proto -p sallyport-common -p sallyport-relay -p sallyport-connector

echo "== one crypto provider (ring) in the build"
if cargo tree --locked -e normal -i aws-lc-rs >/dev/null 2>&1; then
    echo "aws-lc-rs is in the dependency tree; only ring may be" >&2
    exit 1
fi

echo "== docker-compose.yml"
docker-compose -f docker-compose.yml config -q

echo "== the committed browser bundle is what its source builds"
# Rebuilds web-client/dist from source (wasm toolchain, wasm-bindgen, wasm-opt,
# npm, esbuild) and fails if it differs from what is committed.
scripts/build-web.sh
if ! git diff --quiet -- web-client/dist || [ -n "$(git ls-files --others --exclude-standard -- web-client/dist)" ]; then
    git status --short -- web-client/dist >&2
    echo "web-client/dist differs from a fresh build: run scripts/build-web.sh and commit the result" >&2
    exit 1
fi

echo "== browser test dependencies (tests/browser: playwright-core)"
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

echo "== OpenID provider for the sign-on tests (tests/oidc: oidc-provider)"
npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error

echo "== tests"
# The end-to-end tests start the binaries, so build them first.
cargo build --locked --workspace --bins
cargo nextest run --locked --workspace --no-fail-fast
