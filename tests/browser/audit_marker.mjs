// A browser session that the relay records: logs in at the terminal, runs
// `echo marker-$RANDOM`, exits. Reports the marker line and the session id
// the client reported its events under.
import { journey, openTerminal, pressEnter, run, signIn, sshLogin, type, waitForShell } from "./lib.mjs";

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const marker = await run(page, "echo marker-$RANDOM", /^marker-\d+$/);
  const sessionId = await page.evaluate(() => window.sallyport.session?.id);
  await type(page, "exit 3");
  await pressEnter(page);
  await page.waitForFunction(() => window.sallyport.endReason != null);
  const endReason = await page.evaluate(() => window.sallyport.endReason);
  return { marker, sessionId, endReason };
});
