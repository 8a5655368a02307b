// Logs in at the terminal page as a person would, whatever the server asks:
// at `login as:` keeps the offered name or types LOGIN_NAME (optional)
// instead, then answers every password prompt (keyboard-interactive's
// "Password:" or "user@service's password:") with SSH_PASSWORD until a
// shell prompt, and runs `id -un; echo $((6*7))`.
//
// Prints what the page showed: every line of the terminal's buffer, the
// prompts answered in order, the cells of the lines before the first
// prompt that are drawn in a colour or style (a banner's escape sequences
// must not reach the terminal), and the account the shell runs as.
import {
  cursorLine,
  journey,
  openTerminal,
  run,
  STEP_MS,
  sessionState,
  signIn,
  submit,
  terminalLines,
  type,
  waitForShell,
} from "./lib.mjs";

const PASSWORD_PROMPT = /password[^:]*:\s*$/i;
const LOGIN_PROMPT = /login as:/i;
/** Prompts answered at most (three per method and two methods, and one more). */
const MAX_PROMPTS = 7;

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  const password = process.env.SSH_PASSWORD ?? "";
  const loginName = process.env.LOGIN_NAME;
  const prompts = [];
  let offered = null;
  for (;;) {
    // Whatever comes next: login as:, a password prompt, a shell, or the end.
    let line = "";
    const deadline = Date.now() + STEP_MS;
    for (;;) {
      if (Date.now() > deadline) throw new Error(`nothing to answer; the cursor line is: ${line}`);
      line = await cursorLine(page);
      if (LOGIN_PROMPT.test(line) && offered === null) break;
      if (PASSWORD_PROMPT.test(line)) break;
      if (/[$#]\s*$/.test(line)) break;
      if (await page.evaluate(() => window.sallyport.endReason !== null)) break;
      await page.waitForTimeout(50);
    }
    if (LOGIN_PROMPT.test(line) && offered === null) {
      // The offered name may be drawn a moment after the prompt: read the
      // line until it stays the same, so what is offered is all there.
      for (let settled = 0; settled < 3; ) {
        await page.waitForTimeout(50);
        const again = await cursorLine(page);
        settled = again === line ? settled + 1 : 0;
        line = again;
      }
      offered = line.replace(/^.*login as:\s*/i, "");
      prompts.push("login as:");
      if (loginName !== undefined) {
        await page.locator(".xterm-helper-textarea").focus();
        for (let i = 0; i < offered.length; i++) await page.keyboard.press("Backspace");
        await type(page, loginName);
      }
      await submit(page);
      continue;
    }
    if (PASSWORD_PROMPT.test(line) && prompts.length < MAX_PROMPTS) {
      prompts.push(line.trim());
      await type(page, password);
      await submit(page);
      continue;
    }
    break;
  }
  const state = await sessionState(page);
  let whoami = null;
  if (state.endReason === null) {
    await waitForShell(page);
    await run(page, "id -un; echo $((6*7))", /^42$/);
    const lines = await terminalLines(page);
    whoami = lines[lines.findLastIndex((l) => /^42$/.test(l)) - 1];
  }
  const styled = await page.evaluate(() => {
    const b = window.sallyport.term.buffer.active;
    const cell = b.getNullCell();
    const out = [];
    for (let y = 0; y < b.length; y++) {
      const line = b.getLine(y);
      const text = line.translateToString(true);
      if (/password[^:]*:|Password:/.test(text)) break;
      for (let x = 0; x < line.length; x++) {
        line.getCell(x, cell);
        const plain =
          cell.isFgDefault() &&
          cell.isBgDefault() &&
          !cell.isBold() &&
          !cell.isInverse() &&
          !cell.isUnderline() &&
          !cell.isBlink() &&
          !cell.isInvisible();
        if (!plain) out.push({ y, x, char: cell.getChars() });
      }
    }
    return out;
  });
  return {
    lines: await terminalLines(page),
    prompts,
    offered,
    whoami,
    styled,
    title: await page.evaluate(() => document.title),
    session: await sessionState(page),
  };
});
