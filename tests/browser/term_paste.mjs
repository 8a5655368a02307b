// Input bytes: pastes the file PASTE_FILE (text, lines ending in \n) into
// `cat > REMOTE_FILE` in the terminal, as a person pasting it would (xterm's
// paste: line ends become CR, which the pty turns back into LF), with the
// pty echoing it all back. Then Ctrl-D, and waits for the shell prompt (up to
// PASTE_WAIT_S). Reports whether the prompt came back and the session states.
import { readFileSync } from "node:fs";
import { cursorLine, env, journey, openTerminal, sessionState, signIn, sshLogin, submit, type, waitForShell } from "./lib.mjs";

const WAIT_MS = Number(process.env.PASTE_WAIT_S ?? 120) * 1000;

await journey(async ({ s, page }) => {
  const text = readFileSync(env("PASTE_FILE"), "latin1");
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  await type(page, `cat > ${env("REMOTE_FILE")}`);
  await submit(page);
  await page.evaluate((t) => window.sallyport.term.paste(t), text);
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.press("Control+D");
  // The echo of the paste scrolls by; the prompt comes back when cat has it all.
  const deadline = Date.now() + WAIT_MS;
  let promptBack = false;
  const states = new Set();
  for (;;) {
    const st = await sessionState(page);
    states.add(st.status);
    if (/[$#]\s*$/.test(await cursorLine(page))) {
      promptBack = true;
      break;
    }
    if (st.endReason !== null || Date.now() > deadline) break;
    await page.waitForTimeout(100);
  }
  return { promptBack, statesSeen: [...states], pasted: text.length, session: await sessionState(page) };
});
