// Bundles the pages into ../dist (run by scripts/build-web.sh after `npm ci`).
//
// The output is committed and embedded in the relay, and CI rebuilds it, so it
// must be the same bytes on every machine: pinned esbuild, minified, no source
// maps (they would carry paths), no timestamps. The wasm client's glue
// (sallyport_web.js) is not bundled: scripts/build-wasm.sh writes it into
// dist/ and the terminal page imports it at run time from the same folder.

import { copyFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = fileURLToPath(new URL(".", import.meta.url));
const dist = fileURLToPath(new URL("../dist/", import.meta.url));

/** Copied as they are: the pages and the icon. */
const STATIC = [
  "index.html",
  "services.html",
  "account.html",
  "audit.html",
  "admin.html",
  "replay.html",
  "terminal.html",
  "favicon.svg",
];

await mkdir(dist, { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: [
    "src/signin.js",
    "src/services.js",
    "src/account.js",
    "src/audit.js",
    "src/admin.js",
    "src/replay.js",
    "src/terminal.js",
    "src/page.css",
  ],
  outdir: dist,
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome111", "firefox115", "safari16.4"],
  charset: "utf8",
  legalComments: "eof",
  external: ["./sallyport_web.js"],
  logLevel: "warning",
});
for (const f of STATIC) {
  await copyFile(`${here}/static/${f}`, `${dist}/${f}`);
}
