// The session WebSocket drops mid-session, after the relay stored some
// events whose acknowledgements never reached the page. The person clicks
// Reconnect and logs in again; the page sends what was not acknowledged
// (including the first session's end) on the new socket. Reports both
// session ids and the marker each one printed.
import { cursorLine, journey, openTerminal, pressEnter, run, signIn, sshLogin, type, waitForShell } from "./lib.mjs";

await journey(async ({ s, page }) => {
  let dropAcks = false;
  let acksDropped = 0;
  const sockets = [];
  // Between the page and the relay: forwards everything, except the
  // relay's acknowledgements while `dropAcks` is on.
  await page.routeWebSocket(/\/ws\//, (ws) => {
    const server = ws.connectToServer();
    sockets.push({ ws, server });
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (dropAcks && typeof m === "string" && m.includes('"type":"ack"')) {
        acksDropped++;
        return;
      }
      ws.send(m);
    });
  });

  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  await run(page, "echo before-drop", /^before-drop$/);
  dropAcks = true;
  const lost = await run(page, "echo marker-unacked-$RANDOM", /^marker-unacked-\d+$/);
  const first = await page.evaluate(() => window.sallyport.session?.id);
  // The connection drops.
  const { ws, server } = sockets.at(-1);
  await server.close();
  await ws.close();
  await page.waitForFunction(() => window.sallyport.endReason != null);
  dropAcks = false;

  await page.click("#reconnect");
  await page.waitForFunction((id) => window.sallyport.session && window.sallyport.session.id !== id, first);
  // Wait for this session's own login prompt (the old one is still on screen).
  for (let i = 0; i < 200 && !/login as:/i.test(await cursorLine(page)); i++) {
    await page.waitForTimeout(50);
  }
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const after = await run(page, "echo after-reconnect-$RANDOM", /^after-reconnect-\d+$/);
  const second = await page.evaluate(() => window.sallyport.session?.id);
  await type(page, "exit");
  await pressEnter(page);
  await page.waitForFunction(() => window.sallyport.endReason != null);
  return { first, second, lost, after, acksDropped, sockets: sockets.length };
});
