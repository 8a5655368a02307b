// Logs in at the terminal and runs `seq 1 200000` between two marker lines.
// Every line the terminal completes is checked as it arrives (xterm's
// onLineFeed), so the count and the order are exact without a 200,000-line
// scrollback. Reports the count, the first mismatches, the last line and
// the throughput.
import { journey, openTerminal, pressEnter, signIn, sshLogin, type, waitForShell } from "./lib.mjs";

const N = Number(process.env.SEQ_N ?? 200000);

await journey(async ({ s, page }) => {
  const service = process.env.SERVICE ?? "web1";
  await signIn(page, s);
  await openTerminal(page, s, service);
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  await page.evaluate(() => {
    const term = window.sallyport.term;
    const seq = { counting: false, count: 0, next: 1, last: null, bad: [], done: false, start: 0, end: 0 };
    window.__seq = seq;
    term.onLineFeed(() => {
      const b = term.buffer.active;
      const line = b.getLine(b.baseY + b.cursorY - 1)?.translateToString(true) ?? "";
      if (!seq.counting) {
        if (line === "start" && !seq.done) {
          seq.counting = true;
          seq.start = performance.now();
          seq.bytesAtStart = window.sallyport.bytesIn;
        }
        return;
      }
      if (line === "end") {
        seq.counting = false;
        seq.done = true;
        seq.end = performance.now();
        seq.bytes = window.sallyport.bytesIn - seq.bytesAtStart;
        return;
      }
      if (line !== String(seq.next) && seq.bad.length < 5) seq.bad.push({ want: seq.next, got: line });
      seq.count++;
      seq.next++;
      seq.last = line;
    });
  });
  // The quotes keep the echoed command line from matching the markers.
  await type(page, `echo st""art; seq 1 ${N}; echo e""nd`);
  await pressEnter(page);
  await page.waitForFunction(() => window.__seq.done, null, { timeout: 180_000, polling: 100 });
  const seq = await page.evaluate(() => window.__seq);
  const seconds = (seq.end - seq.start) / 1000;
  return {
    count: seq.count,
    last: seq.last,
    bad: seq.bad,
    seconds,
    bytes: seq.bytes,
    mbPerSecond: seq.bytes / 1e6 / seconds,
  };
});
