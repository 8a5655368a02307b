// Signs in as a user named like the Unix account and opens the terminal of
// a service whose sshd trusts the relay's SSH CA: the wasm client makes a
// key pair, the relay certifies it, and the shell comes with nothing typed.
import { journey, openTerminal, run, sessionState, signIn, terminalLines, waitForShell } from "./lib.mjs";

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await waitForShell(page);
  const shown = (await terminalLines(page)).join("\n");
  const answer = await run(page, "echo $((6*7))", /^42$/);
  return {
    answer,
    prompted: /login as:|password/i.test(shown),
    session: await sessionState(page),
  };
});
