// Default-mode mouse reports: the shell puts the pty in raw mode, then turns
// on mouse tracking (`\e[?1000h`, X10 encoding, press and release) and keeps
// the next 12 bytes in REMOTE_FILE. Raw mode comes first: the page clicks as
// soon as tracking is on, and a report that reached a pty still in cooked
// mode with echo on would be echoed and held for a line, not read; the page clicks the cell in column COLUMN
// (1-based, past 95 so its byte is above 0x7f) of row 3. Reports the cell
// clicked and whether the shell got its 12 bytes.
import { env, journey, openTerminal, pressEnter, signIn, sshLogin, type, waitForShell, waitForTerminal } from "./lib.mjs";

const COLUMN = Number(process.env.COLUMN ?? 100);
const ROW = 3;

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await openTerminal(page, s, process.env.SERVICE ?? "web1");
  await sshLogin(page, { password: process.env.SSH_PASSWORD });
  await waitForShell(page);
  const cols = await page.evaluate(() => window.sallyport.term.cols);
  if (cols < COLUMN) throw new Error(`the terminal has ${cols} columns, fewer than ${COLUMN}`);
  await type(
    page,
    `clear; stty raw -echo; printf '\\033[?1000h'; head -c 12 > ${env("REMOTE_FILE")}; stty sane; printf '\\033[?1000l'; echo mo""use-done`,
  );
  await pressEnter(page);
  await page.waitForFunction(() => window.sallyport.term.modes.mouseTrackingMode === "vt200");
  const box = await page.evaluate(() => {
    const r = document.querySelector(".xterm-screen").getBoundingClientRect();
    return { left: r.left, top: r.top, width: r.width, height: r.height };
  });
  const rows = await page.evaluate(() => window.sallyport.term.rows);
  const cellW = box.width / cols;
  const cellH = box.height / rows;
  await page.mouse.click(box.left + (COLUMN - 0.5) * cellW, box.top + (ROW - 0.5) * cellH);
  let done = true;
  try {
    await waitForTerminal(page, "the shell to get the mouse report", (ls) => ls.includes("mouse-done"), 15_000);
  } catch {
    done = false;
  }
  return { column: COLUMN, row: ROW, done };
});
