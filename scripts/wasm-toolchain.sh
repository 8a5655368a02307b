#!/usr/bin/env bash
# Prepares a build environment for Rust on wasm32-unknown-unknown and prints the
# environment variables a wasm build needs, as a file another script can source.
#
#   scripts/wasm-toolchain.sh [options] [ENV_FILE]
#
#   ENV_FILE                    write the environment there instead of to stdout
#   --wasm-bindgen-version V    wasm-bindgen-cli version to install; must equal the
#                               wasm-bindgen crate in Cargo.lock (env
#                               SALLYPORT_WASM_BINDGEN_VERSION; default: read from
#                               the workspace's Cargo.lock)
#   --workspace DIR             source tree remapped to /sallyport in the output
#                               (env SALLYPORT_WASM_WORKSPACE; default: this repo)
#   --prefix DIR                private toolchain prefix (env SALLYPORT_WASM_PREFIX;
#                               default: $HOME/.cache/sallyport/wasm-toolchain)
#   --debian                    use the Debian toolchain even when rustup has the
#                               wasm32 target (env SALLYPORT_WASM_FORCE_DEBIAN=1)
#
# Typical use:
#   scripts/wasm-toolchain.sh "$tmp/wasm.env" && . "$tmp/wasm.env"
#   cargo build --release --target wasm32-unknown-unknown $SALLYPORT_WASM_BUILD_STD_FLAGS \
#       --target-dir target/wasm
#   "$WASM_BINDGEN" --target web ... && "$WASM_OPT" -Oz ...
#
# The environment sets RUSTC, RUSTFLAGS etc. for the wasm build: source it in the
# script (or subshell) that runs the wasm build only, not before host builds.
#
# When `rustup target list --installed` has wasm32-unknown-unknown, the normal
# toolchain is used. Otherwise (machines whose rustup cannot download targets) the
# route verified on them: Debian bookworm-security's rustc-web (Rust 1.96, built for
# Firefox) plus its standard library source are unpacked into the prefix with
# `apt-get download` + `dpkg -x`, and std is built for wasm32 by cargo
# (-Zbuild-std, allowed on stable cargo by RUSTC_BOOTSTRAP=1). Either way clang-19
# and llvm-19 (ring compiles C for wasm32) come from Debian's packages,
# wasm-bindgen-cli is installed with cargo and wasm-opt (binaryen) with npm, both
# into the prefix.
# Progress goes to stderr; running it again does nothing that is already done.
set -euo pipefail

# The Debian packages of the fallback route, pinned: the compiler is part of what
# makes the .wasm reproducible. Override only together with the expected output.
RUST_WEB_VERSION="${SALLYPORT_RUST_WEB_VERSION:-1.96.0+dfsg1-1~deb12u2}"
LLVM_WEB_VERSION="${SALLYPORT_LLVM_WEB_VERSION:-1:22.1.8-1~deb12u1}"
rust_series="$(echo "$RUST_WEB_VERSION" | sed -E 's/^([0-9]+\.[0-9]+)\..*/\1/')"
llvm_major="$(echo "$LLVM_WEB_VERSION" | sed -E 's/^([0-9]+:)?([0-9]+)\..*/\2/')"
DEBS=(
    "rustc-web=$RUST_WEB_VERSION"
    "libstd-rust-web-dev=$RUST_WEB_VERSION"
    "libstd-rust-web-$rust_series=$RUST_WEB_VERSION"
    "rust-web-src=$RUST_WEB_VERSION"
    "libllvm$llvm_major=$LLVM_WEB_VERSION"
    "lld-$llvm_major=$LLVM_WEB_VERSION"
    "liblld-$llvm_major=$LLVM_WEB_VERSION"
)
# wasm-opt, from the npm registry's build of binaryen (see below why not Debian's).
BINARYEN_VERSION="${SALLYPORT_BINARYEN_VERSION:-132.0.0}" # wasm-opt --version says 132
TARGET=wasm32-unknown-unknown

say() { echo "wasm-toolchain: $*" >&2; }
die() { echo "wasm-toolchain: error: $*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_file=""
bindgen_version="${SALLYPORT_WASM_BINDGEN_VERSION:-}"
workspace="${SALLYPORT_WASM_WORKSPACE:-$repo_root}"
prefix="${SALLYPORT_WASM_PREFIX:-${HOME:?HOME is not set}/.cache/sallyport/wasm-toolchain}"
force_debian="${SALLYPORT_WASM_FORCE_DEBIAN:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        --wasm-bindgen-version) bindgen_version="${2:?$1 needs a value}"; shift 2 ;;
        --wasm-bindgen-version=*) bindgen_version="${1#*=}"; shift ;;
        --workspace) workspace="${2:?$1 needs a value}"; shift 2 ;;
        --workspace=*) workspace="${1#*=}"; shift ;;
        --prefix) prefix="${2:?$1 needs a value}"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --debian) force_debian=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$out_file" ] || die "only one ENV_FILE may be given"; out_file="$1"; shift ;;
    esac
done

[ -d "$workspace" ] || die "workspace $workspace is not a directory"
workspace="$(cd "$workspace" && pwd -P)"
mkdir -p "$prefix" || die "cannot create the prefix $prefix"
prefix="$(cd "$prefix" && pwd -P)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
command -v cargo >/dev/null || die "cargo is not on PATH (install Rust with rustup first)"

if [ -z "$bindgen_version" ]; then
    lock="$workspace/Cargo.lock"
    [ -f "$lock" ] && bindgen_version="$(awk '
        $0 == "name = \"wasm-bindgen\"" { hit = 1; next }
        hit && /^version = / { gsub(/"/, "", $3); print $3; exit }
        /^$/ { hit = 0 }' "$lock")"
    [ -n "$bindgen_version" ] || die "no wasm-bindgen version: pass --wasm-bindgen-version V or set SALLYPORT_WASM_BINDGEN_VERSION (the wasm-bindgen version in Cargo.lock; $lock has none)"
fi
[[ "$bindgen_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] \
    || die "wasm-bindgen version '$bindgen_version' is not an exact version like 0.2.100"

# RUSTFLAGS is split on whitespace, so the remapped paths must not contain any.
for p in "$workspace" "$prefix" "$cargo_home"; do
    case "$p" in *[[:space:]]*) die "path '$p' contains whitespace, which RUSTFLAGS cannot carry" ;; esac
done
case "$prefix" in *:*) die "the prefix '$prefix' contains ':', which LD_LIBRARY_PATH cannot carry" ;; esac

# --- apt helpers ------------------------------------------------------------
sudo=() # root runs apt-get itself; anyone else through sudo
[ "$(id -u)" = 0 ] || sudo=(sudo)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
quietly() { # command...: run it, showing its output only when it fails
    "$@" >"$log" 2>&1 && return 0
    local rc=$?
    tail -n 30 "$log" >&2
    return $rc
}
apt_updated=0
apt_update() {
    [ "$apt_updated" = 0 ] || return 0
    apt_updated=1
    [ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null || die "apt-get update needs root and sudo is missing"
    say "apt-get update"
    quietly "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
}
apt_install() { # packages...
    [ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null \
        || die "need root to install $* from Debian's packages (sudo is missing): install them and run again"
    say "installing $* from Debian's packages"
    local cmd=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
        apt-get install -y -qq --no-install-recommends "$@")
    if ! quietly "${cmd[@]}"; then
        [ "$apt_updated" = 0 ] || die "apt-get install $* failed"
        apt_update
        quietly "${cmd[@]}" || die "apt-get install $* failed"
    fi
}
have_candidate() { # package[=version]: does apt know it?
    apt-cache show "$1" >/dev/null 2>&1
}
pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# --- which toolchain ----------------------------------------------------------
mode=debian
if [ "$force_debian" != 1 ]; then
    if command -v rustup >/dev/null; then
        if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then mode=rustup; fi
    elif [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$TARGET/lib" ]; then
        mode=rustup # a plain toolchain that ships the wasm32 standard library
    fi
fi
say "using the $( [ $mode = rustup ] && echo "installed $TARGET target" || echo "Debian rustc-web $RUST_WEB_VERSION route (-Zbuild-std)")"

root="$prefix/root"
stamp="$root/.sallyport-packages"
want_stamp="$(printf '%s\n' "${DEBS[@]}")"

unpack_debian_toolchain() {
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] && [ -x "$root/usr/bin/rustc" ] \
        && [ -e "$root/usr/lib/llvm-$llvm_major/bin/wasm-ld" ] && [ -d "$root/usr/lib/rustlib/src/rust/library/std" ]; then
        return 0 # already unpacked
    fi
    command -v apt-get >/dev/null && command -v dpkg >/dev/null \
        || die "the fallback toolchain needs apt-get and dpkg (Debian 12); or install the $TARGET target with rustup"
    local missing=() d
    for d in "${DEBS[@]}"; do have_candidate "$d" || missing+=("$d"); done
    if [ ${#missing[@]} -gt 0 ]; then
        apt_update
        missing=()
        for d in "${DEBS[@]}"; do have_candidate "$d" || missing+=("$d"); done
        [ ${#missing[@]} -eq 0 ] || die "Debian's package lists lack ${missing[*]} (needs bookworm-security in the apt sources). Available: $(apt-cache policy rustc-web "libllvm$llvm_major" 2>/dev/null | awk '/Candidate/ {printf "%s ", $2}'). Set SALLYPORT_RUST_WEB_VERSION / SALLYPORT_LLVM_WEB_VERSION to use others."
    fi

    local debdir="$prefix/debs" t0=$SECONDS
    rm -rf "$debdir" && mkdir -p "$debdir"
    say "downloading ${#DEBS[@]} Debian packages (~140 MB)"
    local sandbox=()
    [ "$(id -u)" != 0 ] || sandbox=(-o APT::Sandbox::User=root)
    if ! (cd "$debdir" && quietly apt-get download -qq "${sandbox[@]}" "${DEBS[@]}"); then
        apt_update
        (cd "$debdir" && quietly apt-get download -qq "${sandbox[@]}" "${DEBS[@]}") \
            || die "apt-get download ${DEBS[*]} failed"
    fi
    say "downloaded in $((SECONDS - t0)) s; unpacking into $root"

    # Shared libraries they need from the system (libc, libstdc++, libz3, gcc for
    # host build scripts, ...), taken from the packages' own Depends.
    local deps=() f dep
    for f in "$debdir"/*.deb; do
        while IFS= read -r dep; do
            dep="${dep%%|*}"; dep="${dep%%(*}"; dep="${dep// /}"
            [ -n "$dep" ] || continue
            case "$dep" in
                rustc-web|libstd-rust-web-*|rust-web-src|libllvm"$llvm_major"|lld-"$llvm_major"|liblld-"$llvm_major") continue ;;
                libc-dev) dep=libc6-dev ;;
            esac
            pkg_installed "$dep" || deps+=("$dep")
        done < <(dpkg-deb -f "$f" Depends | tr ',' '\n')
    done
    if [ ${#deps[@]} -gt 0 ]; then
        mapfile -t deps < <(printf '%s\n' "${deps[@]}" | sort -u)
        apt_install "${deps[@]}"
    fi

    rm -rf "$root.tmp" && mkdir -p "$root.tmp"
    for f in "$debdir"/*.deb; do dpkg -x "$f" "$root.tmp" || die "dpkg -x $f failed"; done
    printf '%s\n' "$want_stamp" > "$root.tmp/.sallyport-packages"
    rm -rf "$root" && mv "$root.tmp" "$root" && rm -rf "$debdir"
    say "toolchain unpacked in $((SECONDS - t0)) s"
}

# --- the compiler -------------------------------------------------------------
if [ $mode = debian ]; then
    unpack_debian_toolchain
    lib_path="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/llvm-$llvm_major/lib"
    rustc_bin="$root/usr/bin/rustc"
    linker="$root/usr/lib/llvm-$llvm_major/bin/wasm-ld"
    rust_src="$root/usr/lib/rustlib/src/rust"
    [ -x "$rustc_bin" ] && [ -e "$linker" ] && [ -d "$rust_src/library/std" ] \
        || die "$root is incomplete (no rustc, wasm-ld or library source); delete it and run again"
    if ! v="$(LD_LIBRARY_PATH="$lib_path" "$rustc_bin" -V 2>&1)"; then
        die "the unpacked rustc does not run: $v$(LD_LIBRARY_PATH="$lib_path" ldd "$rustc_bin" "$linker" 2>/dev/null | grep 'not found' | sort -u | sed 's/^/\n  /')"
    fi
    LD_LIBRARY_PATH="$lib_path" "$linker" --version >/dev/null 2>&1 || die "the unpacked wasm-ld ($linker) does not run"
    say "$v"
else
    rust_src="$(rustc --print sysroot)/lib/rustlib/src/rust"
fi

# --- C compiler for wasm32 (ring), node + npm for wasm-opt ---------------------
need=()
command -v clang-19 >/dev/null || need+=(clang-19)
command -v llvm-ar-19 >/dev/null || need+=(llvm-19)
command -v node >/dev/null || need+=(nodejs)
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "${need[*]} missing and apt-get is not available: install them"
    apt_install "${need[@]}"
fi
# Debian's nodejs has npm in a package of its own; NodeSource's includes it.
command -v npm >/dev/null || apt_install npm
cc_bin="$(command -v clang-19)" || die "clang-19 is still missing"
ar_bin="$(command -v llvm-ar-19)" || die "llvm-ar-19 is still missing"

# --- wasm-opt -------------------------------------------------------------------
# Not Debian's binaryen: its version 108 writes wasm-bindgen's externref table
# export as table 0 (binaryen issue 4711, fixed in 109), so the optimized module
# fails in the browser at init ("WebAssembly.Table.set(): ... function-typed").
# The npm package is binaryen compiled to JS/wasm: slower (~20 s per MB), but
# current, pinned, and the same everywhere Node runs.
binaryen_root="$prefix/binaryen-$BINARYEN_VERSION"
wasm_opt="$binaryen_root/node_modules/.bin/wasm-opt"
wasm_opt_version() { "$wasm_opt" --version 2>/dev/null | awk '{print $3}'; }
if [ "$(wasm_opt_version)" != "${BINARYEN_VERSION%%.*}" ]; then
    say "npm install binaryen@$BINARYEN_VERSION (wasm-opt)"
    rm -rf "$binaryen_root" && mkdir -p "$binaryen_root"
    quietly npm install --prefix "$binaryen_root" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        "binaryen@$BINARYEN_VERSION" || die "npm install binaryen@$BINARYEN_VERSION failed"
    [ "$(wasm_opt_version)" = "${BINARYEN_VERSION%%.*}" ] \
        || die "$wasm_opt does not report version $BINARYEN_VERSION"
fi

# --- wasm-bindgen-cli ---------------------------------------------------------
bindgen_root="$prefix/wasm-bindgen-$bindgen_version"
bindgen_bin="$bindgen_root/bin/wasm-bindgen"
if [ "$("$bindgen_bin" --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
    say "cargo install wasm-bindgen-cli $bindgen_version (takes a few minutes)"
    t0=$SECONDS
    # Built for the host with the normal toolchain, whatever a sourced wasm env says.
    install=(env -u RUSTC -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_BOOTSTRAP -u CARGO_BUILD_TARGET
        -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR
        cargo install --quiet wasm-bindgen-cli --version "=$bindgen_version" --root "$bindgen_root")
    if ! "${install[@]}" --locked >"$log" 2>&1; then
        # A registry mirror can lag behind the crate's own Cargo.lock (a locked
        # dependency it does not have yet): then resolve against what it has.
        if ! grep -q 'failed to select a version' "$log"; then
            tail -n 30 "$log" >&2
            die "cargo install wasm-bindgen-cli $bindgen_version failed"
        fi
        say "its Cargo.lock needs crates this registry lacks; installing without --locked"
        quietly "${install[@]}" || die "cargo install wasm-bindgen-cli $bindgen_version failed"
    fi
    [ "$("$bindgen_bin" --version 2>/dev/null | awk '{print $2}')" = "$bindgen_version" ] \
        || die "$bindgen_bin does not report version $bindgen_version"
    say "wasm-bindgen-cli installed in $((SECONDS - t0)) s"
fi

# --- the environment ------------------------------------------------------------
# Reproducible output: no build-machine paths in the .wasm (panic locations etc.).
# rustc applies the last matching remap, so more specific paths come later.
remaps=("$workspace=/sallyport" "$cargo_home/registry=/cargo/registry" "$cargo_home/git=/cargo/git")
if [ -e "$rust_src" ]; then
    remaps+=("$rust_src=/rust-src")
    real_src="$(cd "$rust_src" && pwd -P)"
    [ "$real_src" = "$rust_src" ] || remaps+=("$real_src=/rust-src")
fi
rustflags='--cfg getrandom_backend="wasm_js"'
for r in "${remaps[@]}"; do rustflags+=" --remap-path-prefix=$r"; done

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
emit() {
    echo "# wasm32 build environment from scripts/wasm-toolchain.sh ($mode toolchain); source it."
    if [ $mode = debian ]; then
        echo "export LD_LIBRARY_PATH=$(q "$lib_path")\"\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
        echo "export RUSTC=$(q "$rustc_bin")"
        echo "export RUSTC_BOOTSTRAP=1"
        echo "export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$(q "$linker")"
        echo "export SALLYPORT_WASM_BUILD_STD_FLAGS='-Zbuild-std=std,panic_abort'"
    else
        echo "unset RUSTC RUSTC_BOOTSTRAP CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER"
        echo "export SALLYPORT_WASM_BUILD_STD_FLAGS=''"
    fi
    echo "export CC_wasm32_unknown_unknown=$(q "$cc_bin")"
    echo "export AR_wasm32_unknown_unknown=$(q "$ar_bin")"
    echo "export RUSTFLAGS=$(q "$rustflags")"
    echo "export WASM_BINDGEN=$(q "$bindgen_bin")"
    echo "export WASM_OPT=$(q "$wasm_opt")"
}
if [ -n "$out_file" ]; then
    if ! { emit > "$out_file.tmp.$$" && mv "$out_file.tmp.$$" "$out_file"; }; then
        die "cannot write $out_file"
    fi
    say "environment written to $out_file"
else
    emit
fi
