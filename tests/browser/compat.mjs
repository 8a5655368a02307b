// The compatibility matrix in the browser: signs in once, then for each row
// (ROWS, JSON [{service, expect: "shell" | "refused", passwords, shows}])
// opens the service's terminal page. A "shell" row logs in with SSH_PASSWORD
// (at each of `passwords` prompts), checks a line shows `shows`, runs
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
  submit,
  terminalLines,
  type,
  waitForPasswordPrompt,
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
        for (let round = 1; round < (row.passwords ?? 1); round++) {
          await waitForPasswordPrompt(page);
          await type(page, password);
          await submit(page);
        }
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
    result.shown = !row.shows || lines.some((l) => l.includes(row.shows));
    result.endReason = (await sessionState(page)).endReason;
    result.endShown = await page.locator("#end").textContent();
    result.tail = lines.filter((l) => l !== "").slice(-4);
    results.push(result);
  }
  return { results };
});
