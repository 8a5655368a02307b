// Signs in, opens the terminal, logs in to sshd at the terminal's prompts
// with the prefilled name, and runs `echo $((6*7))`, then prints UTF-8
// (é, ✓, 日本) from octal escapes, so the terminal must decode it. Reports
// what the terminal showed and how long the page took to reach a shell prompt.
import { journey, openTerminal, run, sessionState, signIn, sshLogin, waitForShell } from "./lib.mjs";

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  await signIn(page, s);
  const start = Date.now();
  await openTerminal(page, s, service);
  const prefilled = await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const toPromptMs = Date.now() - start;
  const answer = await run(page, "echo $((6*7))", /^42$/);
  const utf8 = await run(page, "printf 'u8:\\303\\251\\342\\234\\223\\346\\227\\245\\346\\234\\254\\n'", /^u8:/);
  return { prefilled, answer, utf8, toPromptMs, session: await sessionState(page) };
});
