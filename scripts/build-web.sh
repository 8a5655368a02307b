#!/usr/bin/env bash
# Builds the browser bundle in web-client/dist/ from source, as committed and
# embedded in the relay:
#   1. the wasm SSH client (sallyport_web.js + sallyport_web_bg.wasm), by
#      scripts/build-wasm.sh when it is there;
#   2. the pages (web-client/www): `npm ci` from package-lock.json, then
#      esbuild (pinned) into dist/ — same sources, same bytes;
#   3. NAME.gz beside every file, which the relay serves to browsers that
#      accept gzip: `gzip -9n` stores no name or time, so same bytes again.
# Rebuild the relay afterwards (cargo build) to embed the new bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/build-wasm.sh ]; then
    echo "== wasm client (scripts/build-wasm.sh)"
    scripts/build-wasm.sh
fi

command -v npm >/dev/null || {
    echo "build-web.sh: npm is missing; install Node.js 20 or later with npm" >&2
    exit 1
}
echo "== pages (web-client/www → web-client/dist)"
cd web-client/www
npm ci --no-audit --no-fund --loglevel=error
node build.mjs
cd ../dist
echo "== gzipped copies (NAME.gz)"
for f in *.html *.js *.css *.wasm *.svg; do
    gzip -9n <"$f" >"$f.gz"
    printf '  %-24s %8d bytes, %7d gzipped\n' "$f" "$(wc -c <"$f")" "$(wc -c <"$f.gz")"
done
