// An admin reads the audit log page, filters it to one session's client
// events, follows the replay link and plays the recording in
// asciinema-player until the marker shows.
import { cspViolations, journey, signIn } from "./lib.mjs";

await journey(async ({ s, page, seen }) => {
  const session = process.env.SESSION;
  const marker = process.env.MARKER;
  await signIn(page, s);
  await page.goto(`${s.url}/audit?type=client&session=${encodeURIComponent(session)}`);
  await page.locator("#events tbody tr").first().waitFor();
  const rows = await page.$$eval("#events tbody tr", (trs) =>
    trs.map((tr) => [...tr.children].map((td) => td.textContent)),
  );
  const link = await page.locator("a.replay").first().getAttribute("href");
  const auditCsp = await cspViolations(page);

  await page.goto(`${s.url}${link}?autoplay&speed=20`);
  await page.waitForFunction(
    (m) => document.getElementById("player")?.textContent?.includes(m),
    marker,
    { timeout: 30000 },
  );
  const replayCsp = await cspViolations(page);
  return { rows, link, auditCsp, replayCsp, consoleErrors: seen.consoleErrors };
});
