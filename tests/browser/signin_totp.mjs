// Signs in to an account with a one-time code: the page asks for the code
// after the password, keeps the password, and signs in with it. Then a
// terminal page the policy denies shows the reason instead of a terminal.
import { cspViolations, journey, pathOf, servicesShown, signIn } from "./lib.mjs";

await journey(async ({ s, page }) => {
  await signIn(page, s);
  const askedFor = (await page.locator("#error").textContent()) ?? "";
  const codeShown = await page.locator("#code-field").isVisible();
  const stayed = pathOf(page);
  await page.fill('input[name="code"]', process.env.CODE);
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.pathname === "/services");
  const afterCode = pathOf(page);
  await page.locator('#services li.service[data-allowed="false"]').first().waitFor();
  const services = await servicesShown(page);
  const heldBack = (await page.locator('li.service[data-allowed="false"] .reason').textContent()) ?? "";

  const resp = await page.goto(`${s.url}/t/${process.env.DENIED}`);
  const deniedStatus = resp?.status() ?? 0;
  const reason = (await page.locator("#reason").textContent()) ?? "";
  const terminalShown = (await page.locator(".xterm").count()) > 0;
  const csp = await cspViolations(page);
  return { askedFor, codeShown, stayed, afterCode, services, heldBack, deniedStatus, reason, terminalShown, csp };
});
