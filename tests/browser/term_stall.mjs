// A session whose input the server does not take: `sleep 600` reads
// nothing, then a paste of PASTE_MIB MiB fills the pty, sshd's window and
// then waits in the client. Reports the state the page then shows (waits up
// to STALL_WAIT_S for it to leave "connected").
import { journey, openTerminal, pressEnter, sessionState, signIn, sshLogin, type, waitForShell } from "./lib.mjs";

const MIB = Number(process.env.PASTE_MIB ?? 8);
const WAIT_MS = Number(process.env.STALL_WAIT_S ?? 60) * 1000;

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  await type(page, "sleep 600");
  await pressEnter(page);
  await page.evaluate((mib) => {
    const line = `${"x".repeat(79)}\n`;
    window.sallyport.term.paste(line.repeat(Math.ceil((mib * 1024 * 1024) / line.length)));
  }, MIB);
  const deadline = Date.now() + WAIT_MS;
  let st = await sessionState(page);
  while (st.status === "connected" && Date.now() < deadline) {
    await page.waitForTimeout(200);
    st = await sessionState(page);
  }
  const shown = await page.locator("#status").textContent();
  return { session: st, shown };
});
