// Logs in at the terminal, prints a line, selects it in the terminal and
// copies it with Ctrl+C; then puts a command on the clipboard and pastes it
// with Ctrl+V. Reports what the clipboard held and what the paste ran, and
// whether Ctrl+C with a selection reached the shell as ^C.
import {
  journey,
  openTerminal,
  pressEnter,
  run,
  signIn,
  sshLogin,
  waitForShell,
  waitForTerminal,
} from "./lib.mjs";

await journey(async ({ s, page, context }) => {
  const service = process.env.SERVICE ?? "web1";
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: s.url });
  await signIn(page, s);
  await openTerminal(page, s, service);
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const shown = await run(page, "echo copy-me-$((2+3))", /^copy-me-\d+$/);

  // Select that line with xterm's API (as a drag would) and copy it.
  await page.evaluate((text) => {
    const term = window.sallyport.term;
    const b = term.buffer.active;
    for (let i = b.length - 1; i >= 0; i--) {
      if (b.getLine(i)?.translateToString(true) === text) {
        term.select(0, i, text.length);
        return;
      }
    }
    throw new Error(`${text} is not in the terminal`);
  }, shown);
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.press("Control+C");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const interrupted = (await page.evaluate(() => {
    const b = window.sallyport.term.buffer.active;
    return b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "";
  })).includes("^C");

  await page.evaluate(() => navigator.clipboard.writeText("echo pasted-$((3+4))"));
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.press("Control+V");
  await page.waitForFunction(() => {
    const b = window.sallyport.term.buffer.active;
    return (b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "").includes("pasted-$((3+4))");
  });
  await pressEnter(page);
  const lines = await waitForTerminal(page, "the pasted command's output", (ls) =>
    ls.some((l) => /^pasted-\d+$/.test(l)),
  );
  const pasted = lines.find((l) => /^pasted-\d+$/.test(l));
  return { shown, copied, interrupted, pasted };
});
