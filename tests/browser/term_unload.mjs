// Closing the tab: while the session is live the page asks first (the
// browser's "leave site?" question, from beforeunload), and staying keeps
// the session; once it has ended the tab closes without asking.
import { journey, openTerminal, run, sessionState, signIn, sshLogin, type, pressEnter, waitForShell } from "./lib.mjs";

await journey(async ({ s, page, context }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const dialogs = [];
  page.on("dialog", (d) => {
    dialogs.push(d.type());
    d.dismiss().catch(() => {});
  });
  // Closing asks, and staying (dismiss) keeps the page and its session.
  await page.close({ runBeforeUnload: true });
  const deadline = Date.now() + 10_000;
  while (dialogs.length === 0 && !page.isClosed() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const whileLive = dialogs.splice(0);
  if (page.isClosed()) return { whileLive, closedWhileLive: true };
  const answer = await run(page, "echo still-$((6*7))", /^still-42$/);
  const live = await sessionState(page);
  // Ended: closing does not ask.
  await type(page, "exit");
  await pressEnter(page);
  await page.waitForFunction(() => window.sallyport.endReason !== null);
  const closed = page.waitForEvent("close", { timeout: 10_000 }).then(() => true, () => false);
  await page.close({ runBeforeUnload: true });
  const closedAfterEnd = await closed;
  return { whileLive, answer, statusWhileLive: live.status, afterEnd: dialogs, closedAfterEnd, pages: context.pages().length };
});
