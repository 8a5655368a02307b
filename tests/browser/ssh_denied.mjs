// Signs in to Sallyport, replaces the prefilled login name at the terminal's
// prompt with LOGIN_NAME and answers every password prompt with the wrong
// SSH_PASSWORD until the session ends. Then types a command anyway. Reports
// the end reason, the states and whether any shell answered.
import {
  journey,
  openTerminal,
  pressEnter,
  sessionState,
  signIn,
  sshLogin,
  terminalLines,
  submit,
  type,
  waitForPasswordPrompt,
} from "./lib.mjs";

/** sshd asks up to 6 times by default; stop well after that. */
const MAX_TRIES = 8;

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  const password = process.env.SSH_PASSWORD;
  await signIn(page, s);
  await openTerminal(page, s, service);
  const prefilled = await sshLogin(page, { password, loginName: process.env.LOGIN_NAME });
  let tries = 1;
  while (tries < MAX_TRIES && (await waitForPasswordPrompt(page))) {
    await type(page, password);
    await submit(page);
    tries++;
  }
  await page.waitForFunction(() => window.sallyport.endReason !== null);
  await type(page, "echo $((6*7))");
  await pressEnter(page);
  await page.waitForTimeout(500);
  const lines = await terminalLines(page);
  return {
    prefilled,
    tries,
    session: await sessionState(page),
    shellAnswered: lines.some((l) => l.trim() === "42"),
    endShown: await page.locator("#end").textContent(),
    reconnectVisible: await page.locator("#reconnect").isVisible(),
    tail: lines.filter((l) => l !== "").slice(-10),
  };
});
