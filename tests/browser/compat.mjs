// The compatibility matrix in the browser: signs in once, then for each row
// (ROWS, JSON [{service, expect: "shell" | "refused"}]) opens the service's
// terminal page. A "shell" row logs in with SSH_PASSWORD, runs
// `echo $((6*7))` and exits; a "refused" row waits for the session to end.
// Reports per row what the page showed, the session id its events went to,
// and how long the page took to reach the shell prompt.
import {
  journey,
  openTerminal,
  pressEnter,
  run,
  sessionState,
  signIn,
  sshLogin,
  terminalLines,
  type,
  waitForShell,
} from "./lib.mjs";

await journey(async ({ s, page }) => {
  const rows = JSON.parse(process.env.ROWS);
  const password = process.env.SSH_PASSWORD;
  await signIn(page, s);
  const results = [];
  for (const row of rows) {
    const start = Date.now();
    await openTerminal(page, s, row.service);
    const result = { service: row.service };
    try {
      if (row.expect === "shell") {
        await sshLogin(page, { password });
        await waitForShell(page);
        result.toPromptMs = Date.now() - start;
        result.answer = await run(page, "echo $((6*7))", /^42$/);
        result.sessionId = await page.evaluate(() => window.sallyport.session?.id);
        await type(page, "exit");
        await pressEnter(page);
      }
      await page.waitForFunction(() => window.sallyport.endReason != null);
    } catch (e) {
      result.error = String(e?.message ?? e);
    }
    const lines = await terminalLines(page);
    result.loginPrompted = lines.some((l) => /login as:/i.test(l));
    result.endReason = (await sessionState(page)).endReason;
    result.endShown = await page.locator("#end").textContent();
    result.tail = lines.filter((l) => l !== "").slice(-4);
    results.push(result);
  }
  return { results };
});
