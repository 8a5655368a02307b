// Output bytes: every way a 2-, 3- or 4-byte UTF-8 character can be split
// between two SSH packets (the shell prints the first part, sleeps, prints
// the rest), and a wide character's cells. Reports the lines the terminal
// showed for each split, the cells of `G😀H` and its width on the server.
import { journey, openTerminal, pressEnter, signIn, sshLogin, type, waitForShell, waitForTerminal } from "./lib.mjs";

/** The characters, as UTF-8 bytes. */
const CHARS = [
  ["é", [0xc3, 0xa9]],
  ["—", [0xe2, 0x80, 0x94]],
  ["😀", [0xf0, 0x9f, 0x98, 0x80]],
];
const oct = (bytes) => bytes.map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);

  // One line per split: `S<n>:A` + the first k bytes, a pause long enough
  // for sshd to send them as a packet of their own, then the rest + `B`.
  const splits = [];
  let command = "";
  for (const [ch, bytes] of CHARS) {
    for (let k = 1; k < bytes.length; k++) {
      const n = splits.length;
      splits.push({ n, char: ch, at: k, want: `S${n}:A${ch}B` });
      command += `printf 'S${n}:A${oct(bytes.slice(0, k))}'; sleep .2; printf '${oct(bytes.slice(k))}B\\n'; `;
    }
  }
  // And the server's own view of its width: GNU wc -L sums wcwidth.
  command += `printf 'G\\360\\237\\230\\200H\\n'; printf 'G\\360\\237\\230\\200H' | LC_ALL=C.UTF-8 wc -L | sed 's/^/W:/'; echo sp""lits-done`;
  await type(page, command);
  await pressEnter(page);
  const lines = await waitForTerminal(page, "the splits", (ls) => ls.includes("splits-done"));
  for (const split of splits) {
    // Not the echoed command line (wrapped, a part of it may start so too).
    split.shown = lines.find((l) => l.startsWith(`S${split.n}:`) && !l.includes("\\")) ?? null;
  }
  const cells = await page.evaluate(() => {
    const b = window.sallyport.term.buffer.active;
    for (let i = b.length - 1; i >= 0; i--) {
      const line = b.getLine(i);
      if (line?.translateToString(true) !== "G😀H") continue;
      const out = [];
      for (let x = 0; x < 5; x++) {
        const cell = line.getCell(x);
        out.push({ chars: cell?.getChars() ?? null, width: cell?.getWidth() ?? null });
      }
      return out;
    }
    return null;
  });
  const serverWidth = Number(lines.find((l) => /^W:\d+$/.test(l))?.slice(2) ?? NaN);
  return { splits, cells, serverWidth };
});
