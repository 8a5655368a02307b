#!/usr/bin/env bash
# Builds the Debian packages sallyport-relay, sallyport-connector and
# sallyport (the CLI) with cargo-deb, each with its man pages and bash, zsh
# and fish completions (written by the binary itself from its clap
# definitions) and, for the two daemons, their systemd unit and config file.
#
#   scripts/package.sh [--debug] [--out DIR]
#
# By default it builds release binaries and writes the packages to
# target/debian. --debug (or SALLYPORT_PACKAGE_PROFILE=debug) packages the
# debug binaries already in target/debug instead, without building
# anything: the package test does that, so CI makes no release build.
# Needs cargo-deb (`cargo install --locked cargo-deb`; scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${SALLYPORT_PACKAGE_PROFILE:-release}
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) profile=debug ;;
        --out) out="$2"; shift ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$profile" in
    release | debug) ;;
    *) echo "package.sh: SALLYPORT_PACKAGE_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
if ! command -v cargo-deb >/dev/null; then
    echo "package.sh: cargo-deb is missing: cargo install --locked cargo-deb" >&2
    exit 1
fi

# The binary each package ships, and the crate it comes from.
bins=(sallyport-relay sallyport-connector sallyport)
crates=(sallyport-relay sallyport-connector sallyport-client)

target=$(cargo metadata --locked --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
if [ "$profile" = release ]; then
    cargo build --locked --release --bins -p sallyport-relay -p sallyport-connector -p sallyport-client
    deb_flags=()
else
    for b in "${bins[@]}"; do
        if [ ! -x "$target/debug/$b" ]; then
            echo "package.sh: $target/debug/$b is missing: run cargo build --workspace --bins first" >&2
            exit 1
        fi
    done
    # cargo-deb warns that it is meant for release builds: these packages are
    # for the package test only. Stripped (copies: target/debug stays as it
    # is) and compressed fast, or xz takes minutes over the debug info.
    deb_flags=(--profile dev --strip --fast)
fi

# Man pages and completions from the binaries about to be packaged, where
# the assets lists in */Cargo.toml look for them (cargo-deb reads
# target/release there as the profile's directory).
for b in "${bins[@]}"; do
    assets="$target/$profile/package-assets/$b"
    rm -rf "$assets"
    "$target/$profile/$b" generate-package-assets --out "$assets"
    # Compressed as Debian policy asks (-n: no time stamp, reproducible).
    gzip -9n "$assets"/man/*.1
done

out=${out:-$target/debian}
mkdir -p "$out"
for c in "${crates[@]}"; do
    cargo deb --no-build "${deb_flags[@]}" -p "$c" --output "$out/"
done
ls -l "$out"/*.deb
