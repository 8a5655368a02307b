// Single sign-on: on the sign-in page, the button of provider SSO_PROVIDER
// leads to the OpenID provider's own login page; there the journey signs
// in as SALLYPORT_USER (any password: the test provider's pages are the
// library's development ones) and confirms the consent page, and the
// browser comes back to the relay's services page, signed in. Then it opens
// the terminal page of SSO_SERVICE and reports whether it was served or
// refused, with the refusal's text.
import { journey, pathOf } from "./lib.mjs";
import { env } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  const provider = env("SSO_PROVIDER");
  const service = env("SSO_SERVICE");
  await page.goto(`${s.url}/`);
  const button = page.locator(`#sso a[data-provider="${provider}"]`);
  await button.waitFor();
  const buttonText = await button.textContent();
  await button.click();

  // The provider's login page (another origin).
  await page.locator('input[name="login"]').waitFor();
  const providerOrigin = new URL(page.url()).origin;
  await page.fill('input[name="login"]', s.user);
  await page.fill('input[name="password"]', s.password);
  await page.click('button[type="submit"]');

  // Its consent page, the first time; then back to the relay.
  const relayOrigin = new URL(s.url).origin;
  const back = page.waitForURL((u) => u.origin === relayOrigin && u.pathname === "/services");
  const consent = page.locator('input[name="prompt"][value="consent"]');
  await Promise.race([back, consent.waitFor({ state: "attached" })]);
  if (new URL(page.url()).origin !== relayOrigin) {
    await page.click('button[type="submit"]');
  }
  await back;
  const afterSignIn = pathOf(page);
  await page.locator("#user").waitFor();
  await page.waitForFunction(() => document.querySelector("#user")?.textContent?.trim());
  const userShown = (await page.locator("#user").textContent()).trim();

  const resp = await page.goto(`${s.url}/t/${service}`);
  const terminalStatus = resp.status();
  const terminalText = await page.locator("body").innerText();

  return {
    buttonText,
    providerOrigin,
    afterSignIn,
    userShown,
    terminalStatus,
    terminalText,
    urls: seen.urls,
  };
});
