#!/usr/bin/env bash
# Runs every Sallyport check and test on this machine, installing what the
# tests need when it is missing: OpenSSH, curl, docker-compose, Chromium,
# asciinema, Pebble (ACME), the Prometheus client's parser, systemd-analyze,
# man-db, adduser, nftables and PostgreSQL from Debian's packages; cargo-nextest and cargo-deb from
# crates.io; playwright-core and oidc-provider from npm. This is the README's
# test command; .ci/run calls it. The package test installs the .deb files it
# builds with dpkg (as root) and removes them again.
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
# Pebble, the ACME test server (tests/tests/acme.rs).
command -v pebble >/dev/null || missing+=(pebble)
# The metrics tests read both daemons' /metrics with the Prometheus project's
# own OpenMetrics parser (Debian's Python, not a virtualenv's).
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || missing+=(python3-prometheus-client)
# The package test installs the .deb files and checks their units and man pages.
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v man >/dev/null || missing+=(man-db)
command -v adduser >/dev/null || missing+=(adduser)
# The UDP-blocked network test drops UDP with nftables in a network namespace.
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
# The relay's PostgreSQL store and cluster tests start their own PostgreSQL
# 15 clusters (tests/src/postgres.rs) from Debian's server package.
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# scripts/package.sh (and so the package test) builds the .deb files with it;
# 3.x still packages a dev-profile build, which the test uses.
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version '^3.8'

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
status=0
cargo nextest run --locked --workspace --no-fail-fast || status=$?

echo "== the tunnel's session tests again, over TCP"
# Every connector these tests start reads SALLYPORT_TRANSPORT (the
# variable of its --transport flag), and so does the in-process one: the
# same tests, over TLS on TCP with HTTP/2 instead of QUIC. Tests that need
# one transport pass --transport themselves. --workspace as above, so the
# same build serves both runs (a -p build would compile the tests again).
SALLYPORT_TRANSPORT=tcp cargo nextest run --locked --workspace --no-fail-fast -E 'package(sallyport-tests) & (
    binary(audit) | binary(bad_frames) | binary(browser) | binary(browser_auth)
  | binary(browser_terminal) | binary(cli_login) | binary(client_core) | binary(compatibility)
  | binary(connector_grants) | binary(data_path) | binary(enrolment) | binary(hardening_sessions)
  | binary(proxycommand) | binary(resilience) | binary(service_names) | binary(ssh_auth)
  | binary(ssh_cert) | binary(ssh_config) | binary(terminal_flow) | binary(user_lifecycle))' || status=$?

echo "== the relay's tests again, on PostgreSQL"
# With SALLYPORT_TEST_STORE=postgres every relay the harness starts keeps
# its state and its audit chain in a PostgreSQL of its own (--store): the
# same tests on the second engine. Tests that edit sled's files directly
# (the audit tampering ones) stay on sled.
SALLYPORT_TEST_STORE=postgres cargo nextest run --locked --workspace --no-fail-fast -E 'package(sallyport-tests) & (
    binary(admin_pages) | binary(browser_auth) | binary(cli_login) | binary(connector_grants)
  | binary(enrolment) | binary(hardening_admin) | binary(policy) | binary(proxycommand)
  | binary(resilience) | binary(service_names) | binary(ssh_auth) | binary(ssh_cert)
  | binary(ssh_config) | binary(user_lifecycle))' || status=$?
exit $status
