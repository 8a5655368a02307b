// Ctrl-C after a flood: `head -c 50M /dev/urandom | base64` (printable, so
// nothing it prints can change the terminal's modes), Ctrl-C once output
// has been flowing for FLOOD_BYTES, then waits for the shell prompt. Reports
// how many bytes the session received, and xterm showed, after the Ctrl-C
// was pressed; the page's queue bounds; and (not asserted) how long it took.
// THROTTLE=N slows the page's CPU N times (Chrome DevTools Protocol);
// FLOOD_COMMAND replaces the command (for measuring, e.g. raw urandom).
import { cursorLine, journey, openTerminal, pressEnter, signIn, sshLogin, type, waitForShell } from "./lib.mjs";

const FLOOD_BYTES = Number(process.env.FLOOD_BYTES ?? 4 * 1024 * 1024);
const THROTTLE = Number(process.env.THROTTLE ?? 1);
const COMMAND = process.env.FLOOD_COMMAND ?? "head -c 50M /dev/urandom | base64";

await journey(async ({ s, page, context }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  if (THROTTLE > 1) {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
  }
  const counters = () => page.evaluate(() => ({ in: window.sallyport.bytesIn, shown: window.sallyport.bytesShown, t: performance.now() }));
  await type(page, COMMAND);
  await pressEnter(page);
  const start = await counters();
  await page.waitForFunction((n) => window.sallyport.bytesIn >= n, start.in + FLOOD_BYTES, { timeout: 240_000, polling: 20 });
  const atCtrlC = await counters();
  await page.keyboard.press("Control+C");
  const deadline = Date.now() + 120_000;
  while (!/[$#]\s*$/.test(await cursorLine(page))) {
    if (Date.now() > deadline) throw new Error(`no prompt after Ctrl-C; the cursor line is: ${await cursorLine(page)}`);
    await page.waitForTimeout(20);
  }
  const atPrompt = await counters();
  // The prompt is a shell that answers.
  await type(page, "echo $((6*7))");
  await pressEnter(page);
  await waitForShell(page);
  return {
    throttle: THROTTLE,
    receivedAfter: atPrompt.in - atCtrlC.in,
    shownAfter: atPrompt.shown - atCtrlC.shown,
    msToPrompt: atPrompt.t - atCtrlC.t,
    floodMbPerSecond: (atCtrlC.in - start.in) / 1e3 / (atCtrlC.t - start.t),
    limits: await page.evaluate(() => window.sallyport.limits),
  };
});
