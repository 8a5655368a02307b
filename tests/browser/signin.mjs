// Signs in with the right password: the browser lands on the services page,
// which lists the services with their state. Then `/` (signed in) leads to
// the services page again, and "Sign out" leads back to the sign-in page,
// after which the services page is out of reach.
import { cspViolations, journey, pathOf, servicesShown, signIn } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  await signIn(page, s);
  const afterSignIn = pathOf(page);
  await page.locator("#services li.service").first().waitFor();
  // The page refreshes its list; wait for what the test expects to settle.
  const expectOffline = process.env.EXPECT_OFFLINE;
  if (expectOffline) {
    await page
      .locator(`#services li.service[data-name="${expectOffline}"][data-online="false"]`)
      .waitFor();
  }
  const services = await servicesShown(page);
  const userShown = await page.locator("#user").textContent();
  const csp = await cspViolations(page);

  await page.goto(`${s.url}/`);
  const rootWhenSignedIn = pathOf(page);

  await page.click("#signout");
  await page.waitForURL((u) => u.pathname === "/");
  const afterSignOut = pathOf(page);
  await page.goto(`${s.url}/services`);
  const servicesAfterSignOut = pathOf(page);

  return {
    afterSignIn,
    services,
    userShown,
    csp,
    rootWhenSignedIn,
    afterSignOut,
    servicesAfterSignOut,
    consoleErrors: seen.consoleErrors,
  };
});
