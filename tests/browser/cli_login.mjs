// `sallyport login` through the browser: opens the URL the CLI printed
// (CLI_LOGIN_URL), which leads a browser that is not signed in to the
// relay's sign-in page; signs in there as a person would, answers the
// relay's question (sign the command in as this user?) with Continue, and
// follows the redirect back to the CLI's loopback listener. Reports where
// the browser went, what it was asked and what the listener answered.
import { cspViolations, env, journey, pathOf } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  await page.goto(env("CLI_LOGIN_URL"));
  const signInPage = pathOf(page);
  const next = new URL(page.url()).searchParams.get("next");
  await page.locator("#fields:not([disabled])").waitFor();
  await page.fill('input[name="user"]', s.user);
  await page.fill('input[name="password"]', s.password);
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.pathname === "/cli/login");
  await page.locator("#confirm").waitFor();
  const asked = await page.locator("main").textContent();
  const userAsked = await page.locator("#user").textContent();
  const csp = await cspViolations(page);
  await page.click("#confirm");
  await page.waitForURL((u) => u.hostname === "127.0.0.1");
  const callback = new URL(page.url());
  const answer = await page.locator("body").textContent();
  return {
    signInPage,
    next,
    asked,
    userAsked,
    csp,
    callbackHost: callback.host,
    callbackPath: callback.pathname,
    callbackParams: [...callback.searchParams.keys()].sort(),
    answer,
    urls: seen.urls,
  };
});
