// Signs in, follows the service's link to its terminal page and waits for
// the connection state to leave "connecting". Reports the page's structure:
// the xterm terminal, its size, the status indicator, CSP violations.
import { cspViolations, journey, pathOf, sessionState, signIn } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  const service = process.env.SERVICE ?? "web1";
  await signIn(page, s);
  await page.click(`#services li.service[data-name="${service}"] a`);
  await page.waitForURL((u) => u.pathname === `/t/${service}`);
  await page.locator(".xterm .xterm-screen").waitFor();
  await page.waitForFunction(() => window.sallyport && window.sallyport.status !== "connecting");
  const screen = await page.locator(".xterm .xterm-screen").boundingBox();
  const status = page.locator("#status");
  return {
    path: pathOf(page),
    title: await page.title(),
    serviceShown: await page.locator("#service").textContent(),
    screen,
    viewport: page.viewportSize(),
    statusText: await status.textContent(),
    statusState: await status.getAttribute("data-state"),
    statusVisible: await status.isVisible(),
    reconnectVisible: await page.locator("#reconnect").isVisible(),
    session: await sessionState(page),
    csp: await cspViolations(page),
    consoleErrors: seen.consoleErrors,
  };
});
