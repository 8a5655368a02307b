// Opens the terminal of a service whose sshd now presents a host key the
// connector did not report. If the page asks for a login name first, it is
// accepted; a password prompt is never answered. Reports how the session
// ended and whether a password was ever asked for.
import { journey, openTerminal, pressEnter, sessionState, signIn, terminalLines } from "./lib.mjs";

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  await signIn(page, s);
  await openTerminal(page, s, service);
  let answeredLogin = false;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const st = await sessionState(page);
    if (st.endReason !== null) break;
    const lines = await terminalLines(page);
    if (!answeredLogin && lines.some((l) => /login as:/i.test(l))) {
      await pressEnter(page);
      answeredLogin = true;
    }
    await page.waitForTimeout(50);
  }
  const lines = await terminalLines(page);
  return {
    answeredLogin,
    passwordPrompted: lines.some((l) => /password/i.test(l)),
    session: await sessionState(page),
    endShown: await page.locator("#end").textContent(),
    tail: lines.filter((l) => l !== "").slice(-10),
  };
});
