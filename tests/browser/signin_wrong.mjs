// Signs in with a wrong password: the page shows the relay's error and stays
// on the sign-in page; going to a terminal page directly leads back to it.
// Reports every page the browser was on.
import { journey, pathOf, signIn } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  await signIn(page, s);
  const error = (await page.locator("#error").textContent()) ?? "";
  const errorVisible = await page.locator("#error").isVisible();
  const afterSignIn = pathOf(page);
  const service = process.env.SERVICE ?? "web1";
  await page.goto(`${s.url}/t/${service}`);
  const afterTerminalUrl = pathOf(page);
  const terminalShown = (await page.locator(".xterm").count()) > 0;
  return {
    error,
    errorVisible,
    afterSignIn,
    afterTerminalUrl,
    terminalShown,
    urls: seen.urls.map((u) => new URL(u).pathname),
  };
});
