// Opens the terminal of a service ATTEMPTS times. Each time, waits until the
// session either ends (e.g. a host key mismatch) or shows the login prompt,
// and records which. Nothing is ever typed.
import { journey, openTerminal, sessionState, signIn, terminalLines } from "./lib.mjs";

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  const attempts = Number(process.env.ATTEMPTS ?? "4");
  await signIn(page, s);
  const outcomes = [];
  for (let i = 0; i < attempts; i++) {
    await openTerminal(page, s, service);
    const deadline = Date.now() + 30_000;
    let outcome = { ended: null, prompted: false };
    while (Date.now() < deadline) {
      const st = await sessionState(page);
      const lines = await terminalLines(page);
      if (st.endReason !== null) {
        outcome = { ended: st.endReason, prompted: lines.some((l) => /login as:|password/i.test(l)) };
        break;
      }
      if (lines.some((l) => /login as:/i.test(l))) {
        outcome = { ended: null, prompted: true };
        break;
      }
      await page.waitForTimeout(50);
    }
    outcomes.push(outcome);
  }
  return { outcomes };
});
