// Single sign-on: on the sign-in page, the button of provider SSO_PROVIDER
// leads to the OpenID provider's own login page; there the journey signs
// in as SALLYPORT_USER (any password: the test provider's pages are the
// library's development ones) and confirms the consent page, and the
// browser comes back to the relay's services page, signed in. Then it opens
// the terminal page of SSO_SERVICE and reports whether it was served or
// refused, with the refusal's text. When the relay refuses the sign-in
// itself, the journey reports the refusal page's status and reason instead.
// It also reports how many provider buttons the page shows and whether the
// password form is visible.
import { journey, pathOf } from "./lib.mjs";
import { env } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  const provider = env("SSO_PROVIDER");
  const service = env("SSO_SERVICE");
  await page.goto(`${s.url}/`);
  const button = page.locator(`#sso a[data-provider="${provider}"]`);
  await button.waitFor();
  const buttonText = await button.textContent();
  const buttons = await page.locator("#sso a").count();
  const passwordForm = await page.locator("#signin").isVisible();
  await button.click();

  // The provider's login page (another origin).
  await page.locator('input[name="login"]').waitFor();
  const providerOrigin = new URL(page.url()).origin;
  await page.fill('input[name="login"]', s.user);
  await page.fill('input[name="password"]', s.password);
  const callback = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith("/callback"));
  await page.click('button[type="submit"]');

  // Its consent page, the first time; then back to the relay: the services
  // page, or the relay's refusal.
  const relayOrigin = new URL(s.url).origin;
  const back = page.waitForURL((u) => u.origin === relayOrigin && u.pathname === "/services");
  back.catch(() => {}); // not reached when the relay refuses
  const refusal = page.locator("#reason");
  const consent = page.locator('input[name="prompt"][value="consent"]');
  await Promise.race([back, refusal.waitFor(), consent.waitFor({ state: "attached" })]);
  if (new URL(page.url()).origin !== relayOrigin) {
    await page.click('button[type="submit"]');
  }
  const callbackStatus = (await callback).status();
  await Promise.race([back, refusal.waitFor()]);
  if (pathOf(page) !== "/services") {
    return {
      buttonText,
      buttons,
      passwordForm,
      providerOrigin,
      callbackStatus,
      afterSignIn: pathOf(page),
      refusal: (await refusal.textContent()).trim(),
      urls: seen.urls,
    };
  }
  const afterSignIn = pathOf(page);
  await page.locator("#user").waitFor();
  await page.waitForFunction(() => document.querySelector("#user")?.textContent?.trim());
  const userShown = (await page.locator("#user").textContent()).trim();

  const resp = await page.goto(`${s.url}/t/${service}`);
  const terminalStatus = resp.status();
  const terminalText = await page.locator("body").innerText();

  return {
    buttonText,
    buttons,
    passwordForm,
    providerOrigin,
    callbackStatus,
    afterSignIn,
    userShown,
    terminalStatus,
    terminalText,
    urls: seen.urls,
  };
});
