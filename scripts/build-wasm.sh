#!/usr/bin/env bash
# Builds the browser SSH client (web-client, compiled to wasm32) into
# web-client/dist/sallyport_web.js and web-client/dist/sallyport_web_bg.wasm.
# The toolchain comes from scripts/wasm-toolchain.sh (rustup's wasm32 target
# where it is installed, Debian's rustc-web otherwise); wasm-bindgen is the
# version pinned in Cargo.lock, and paths are remapped, so the output is the
# same on every machine of this kind. scripts/build-web.sh calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

env_file="$(mktemp)"
trap 'rm -f "$env_file"' EXIT
scripts/wasm-toolchain.sh "$env_file"

(
    # shellcheck disable=SC1090
    . "$env_file"
    # shellcheck disable=SC2086 # the build-std flags are a word list, or empty
    cargo build --locked --profile wasm --lib -p sallyport-client \
        --target wasm32-unknown-unknown $SALLYPORT_WASM_BUILD_STD_FLAGS --target-dir target/wasm
    out=web-client/dist
    mkdir -p "$out"
    "$WASM_BINDGEN" --target web --no-typescript --out-dir "$out" --out-name sallyport_web \
        target/wasm/wasm32-unknown-unknown/wasm/sallyport_client.wasm
    # Rust's wasm32 target enables these proposals; wasm-opt must accept them.
    "$WASM_OPT" -Oz --strip-debug --strip-producers \
        --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
        --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
        "$out/sallyport_web_bg.wasm" -o "$out/sallyport_web_bg.wasm"
    ls -l "$out/sallyport_web_bg.wasm" "$out/sallyport_web.js" >&2
)
