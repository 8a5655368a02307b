#!/usr/bin/env bash
# Benchmarks Sallyport against the direct path on loopback, and in the
# browser against two reference web terminals (webssh, shellinabox), and
# writes docs/BENCHMARKS.md. Installs what the run needs first: OpenSSH,
# Chromium, Node.js and shellinabox from Debian's packages, playwright-core
# from npm, webssh from PyPI into a venv under target/.
# Knobs: BENCH_BYTES (default 1 GiB), BENCH_ROUNDS (2), BENCH_ECHO (2000
# round trips), BENCH_SETUP (100 sessions), BENCH_BROWSER_RUNS (10 page
# loads), BENCH_SEQ_RUNS (3), BENCH_SIAB_SEQ_S (60: shellinabox's time for
# the large `seq`), BENCH_BROWSER (1; 0 skips the browser table), BENCH_OUT,
# and for the table at 5 % datagram loss (through the `lossy-udp` forwarder,
# built with the other binaries): BENCH_LOSS_BYTES (64 MiB),
# BENCH_LOSS_SETUP (20 sessions).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null || missing+=(nodejs npm)
[ -x /usr/bin/shellinaboxd ] || missing+=(shellinabox)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -d tests/browser/node_modules/playwright-core ] ||
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# webssh, pinned, in its own venv (Debian's Python, not whatever is first on PATH).
venv=target/bench-venv
if ! [ -x "$venv/bin/wssh" ] || [ "$("$venv/bin/wssh" --version 2>/dev/null)" != 1.6.3 ]; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'webssh==1.6.3'
fi
export BENCH_WSSH="$PWD/$venv/bin/wssh"

cargo build --locked --release --workspace --bins
exec target/release/sallyport-bench
