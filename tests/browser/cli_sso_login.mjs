// `sallyport login` through single sign-on: opens the URL the CLI printed
// (CLI_LOGIN_URL), which leads a browser that is not signed in to the
// relay's sign-in page; there it takes the button of provider SSO_PROVIDER,
// signs in on the provider's own pages, comes back to the relay's question
// (sign the command in as this user?), answers Continue and follows the
// redirect to the CLI's loopback listener. Reports where it went.
import { env, journey, pathOf, signInAtProvider } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  await page.goto(env("CLI_LOGIN_URL"));
  const signInPage = pathOf(page);
  const button = page.locator(`#sso a[data-provider="${env("SSO_PROVIDER")}"]`);
  await button.waitFor();
  const buttonHref = await button.getAttribute("href");
  await button.click();
  await signInAtProvider(page, s);
  await page.waitForURL((u) => u.pathname === "/cli/login");
  await page.locator("#confirm").waitFor();
  const userAsked = await page.locator("#user").textContent();
  await page.click("#confirm");
  await page.waitForURL((u) => u.hostname === "127.0.0.1");
  const callback = new URL(page.url());
  return {
    signInPage,
    buttonHref,
    userAsked,
    callbackPath: callback.pathname,
    answer: await page.locator("body").textContent(),
    urls: seen.urls,
  };
});
