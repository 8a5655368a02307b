// A live terminal session that an admin ends from the relay's side (`user
// lock`, `user remove`): signs in, logs in to sshd at the terminal page,
// reaches a shell, then writes READY_FILE and waits (as long as a step may
// take) for the session to end. Prints the end reason the page showed and
// how the page's status went (and when it saw the end, `endedAtMs`, Unix
// milliseconds), then whether the browser is still signed in and, if not,
// what signing in again showed.
import { writeFileSync } from "node:fs";
import {
  env,
  journey,
  openTerminal,
  pathOf,
  sessionState,
  signIn,
  sshLogin,
  STEP_MS,
  waitForShell,
} from "./lib.mjs";

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, env("SERVICE"));
  await sshLogin(page, { password: env("SSH_PASSWORD") });
  await waitForShell(page);
  const before = await sessionState(page);
  writeFileSync(env("READY_FILE"), "ready\n");
  await page.waitForFunction(() => window.sallyport.endReason !== null, null, {
    timeout: 2 * STEP_MS,
    polling: 50,
  });
  const endedAtMs = Date.now();
  const after = await sessionState(page);
  // Still signed in (only the session was ended): the sign-in page sends
  // the browser on to the services. Otherwise, sign in again.
  await page.goto(`${s.url}/`);
  const stillSignedIn = pathOf(page) === "/services";
  let signInError = null;
  if (!stillSignedIn) {
    await signIn(page, s);
    signInError = (await page.locator("#error:not([hidden])").textContent().catch(() => null)) ?? null;
  }
  return { before: before.status, after, endedAtMs, stillSignedIn, signInError, pathAfterSignIn: pathOf(page) };
});
