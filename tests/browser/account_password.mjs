// A user changes their password on the account page: a wrong current
// password is refused with the relay's words; the right one changes it; the
// old password then no longer signs in and the new one does. NEW_PASSWORD is
// the new password.
import { env, journey, pathOf, signIn } from "./lib.mjs";

async function change(page, current, next) {
  await page.fill('#password input[name="current"]', current);
  await page.fill('#password input[name="new"]', next);
  await page.fill('#password input[name="repeat"]', next);
  await page.click("#password-button");
  await Promise.race([
    page.locator("#password-done:not([hidden])").waitFor(),
    page.locator("#error:not([hidden])").waitFor(),
  ]);
  const error = await page.locator("#error").evaluate((e) => (e.hidden ? null : e.textContent));
  const done = await page.locator("#password-done").evaluate((e) => !e.hidden);
  return { error, done };
}

await journey(async ({ s, page }) => {
  const next = env("NEW_PASSWORD");
  await signIn(page, s);
  await page.goto(`${s.url}/account`);
  await page.locator("#state:not(:empty)").waitFor();
  const wrong = await change(page, `${s.password} but wrong`, next);
  const right = await change(page, s.password, next);

  await page.click("#signout");
  await page.waitForURL((u) => u.pathname === "/");
  await signIn(page, s);
  const oldPassword = {
    path: pathOf(page),
    error: await page.locator("#error").evaluate((e) => (e.hidden ? null : e.textContent)),
  };
  await signIn(page, s, next);
  const newPassword = { path: pathOf(page) };
  return { wrong, right, oldPassword, newPassword };
});
