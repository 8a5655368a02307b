// Logs in at the terminal, reads `stty size`, makes the browser window
// larger and reads it again. Reports the terminal's size and what stty said,
// before and after.
import { journey, openTerminal, run, sessionState, signIn, sshLogin, waitForShell } from "./lib.mjs";

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  await signIn(page, s);
  await openTerminal(page, s, service);
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const before = await sessionState(page);
  const sttyBefore = await run(page, "echo sz1-$(stty size)", /^sz1-\d+ \d+$/);

  await page.setViewportSize({ width: 1400, height: 900 });
  await page.waitForFunction((cols) => window.sallyport.term.cols !== cols, before.cols);
  await waitForShell(page);
  const after = await sessionState(page);
  const sttyAfter = await run(page, "echo sz2-$(stty size)", /^sz2-\d+ \d+$/);
  return {
    before: { cols: before.cols, rows: before.rows, stty: sttyBefore.replace("sz1-", "") },
    after: { cols: after.cols, rows: after.rows, stty: sttyAfter.replace("sz2-", "") },
  };
});
