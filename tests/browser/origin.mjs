// Opens the session WebSocket from a page on another origin of the same
// site (https://localhost:OTHER_PORT, so the SameSite=Strict cookie goes
// along and only the Origin check can stop it), then, as a control, from the
// relay's own services page. Reports how each socket ended.
//
// The foreign page comes from a real HTTPS server on loopback (with the
// relay's certificate, TLS_CERT/TLS_KEY): Chromium's local network access
// checks block a page it does not know to be local from reaching loopback,
// which would refuse the socket before the relay could.
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { env, journey, signIn } from "./lib.mjs";

/** Serves one empty page on a free loopback port; resolves with its origin. */
function foreignSite() {
  const server = createServer(
    { cert: readFileSync(env("TLS_CERT")), key: readFileSync(env("TLS_KEY")) },
    (_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>elsewhere</title><p>another site on this host</p>");
    },
  );
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, origin: `https://localhost:${server.address().port}` }),
    ),
  );
}

/** Opens a WebSocket in the page; resolves with how it went. */
function tryWebSocket(page, url) {
  return page.evaluate(
    (url) =>
      new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.binaryType = "arraybuffer";
        let opened = false;
        ws.onopen = () => {
          opened = true;
          ws.close();
        };
        ws.onclose = (e) => resolve({ opened, code: e.code });
      }),
    url,
  );
}

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  const { server, origin: foreign } = await foreignSite();
  try {
    await signIn(page, s);
    const wsUrl = `${s.url.replace(/^https:/, "wss:")}/ws/${service}`;
    const errors = [];
    page.on("websocket", (ws) => ws.on("socketerror", (e) => errors.push(String(e))));

    await page.goto(`${foreign}/`);
    const hasSessionCookie = (await page.context().cookies(s.url)).some(
      (c) => c.name === "__Host-sallyport_session",
    );
    const fromForeign = await tryWebSocket(page, wsUrl);
    fromForeign.error = errors.splice(0).join("; ");

    await page.goto(`${s.url}/services`);
    const fromRelay = await tryWebSocket(page, wsUrl);
    fromRelay.error = errors.splice(0).join("; ");
    return { foreignOrigin: foreign, hasSessionCookie, fromForeign, fromRelay };
  } finally {
    server.close();
  }
});
