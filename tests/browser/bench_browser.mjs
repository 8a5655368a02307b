// The browser half of `scripts/bench.sh` (run by tests/src/bin/bench.rs):
// Sallyport's terminal page and two reference web terminals, webssh and
// shellinabox, in one headless Chromium, against the same sshd. Measures
//
// - page weight: every file the terminal page's load fetched (document,
//   css, js, wasm, icon, fonts; not JSON API calls), fetched again as served and
//   gzipped here (level 9), since the servers send them uncompressed;
// - page load to shell prompt, RUNS times, each in a fresh browser context
//   (empty cache, no cookies);
// - terminal output throughput: `seq 1 SEQ_N` between two marker lines,
//   SEQ_RUNS times (shellinabox once, with a time limit).
//
// Settings (environment): SALLYPORT_URL, SALLYPORT_USER, SALLYPORT_PASSWORD,
// SERVICE (SALLYPORT_URL unset: Sallyport is skipped), SSH_USER, SSH_PASSWORD, SSHD_PORT, BROWSER_PROFILE, CHROMIUM;
// WEBSSH_URL and SIAB_URL (each optional: unset, that peer is skipped);
// RUNS (10), SEQ_RUNS (3), SEQ_N (200000), SIAB_SEQ_S (60).
// Prints one JSON object; progress goes to stderr. A peer that fails is
// reported as {error} and does not stop the others.

import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { FLAGS, env } from "./lib.mjs";

const RUNS = Number(process.env.RUNS ?? 10);
const SEQ_RUNS = Number(process.env.SEQ_RUNS ?? 3);
const SEQ_N = Number(process.env.SEQ_N ?? 200000);
const SIAB_SEQ_S = Number(process.env.SIAB_SEQ_S ?? 60);
const STEP_MS = 30_000;
const PROMPT = "[$#]\\s*$";
const LOGIN = "login as:";
const PASSWORD = "password[^:]*:\\s*$";

const s = {
  url: process.env.SALLYPORT_URL, // unset: Sallyport is skipped (for trying the peers alone)
  user: process.env.SALLYPORT_USER,
  password: process.env.SALLYPORT_PASSWORD,
  service: process.env.SERVICE,
  sshUser: env("SSH_USER"),
  sshPassword: env("SSH_PASSWORD"),
  sshdPort: env("SSHD_PORT"),
  profile: env("BROWSER_PROFILE"),
  chromium: process.env.CHROMIUM || "/usr/bin/chromium",
};

const log = (msg) => process.stderr.write(`bench_browser: ${msg}\n`);

/** Bytes that `seq 1 n` prints. */
function seqBytes(n) {
  let total = 0;
  for (let digits = 1, lo = 1; lo <= n; digits++, lo *= 10) {
    const hi = Math.min(n, lo * 10 - 1);
    total += (hi - lo + 1) * (digits + 1);
  }
  return total;
}

const browser = await chromium.launch({
  executablePath: s.chromium,
  ignoreDefaultArgs: true,
  args: [...FLAGS, `--user-data-dir=${s.profile}`, "--remote-debugging-pipe", "about:blank"],
  timeout: STEP_MS,
});

/**
 * A fresh context (empty cache, no cookies) and its page. `xtermHook` keeps
 * every instance of the page's global `Terminal` in `window.__terms`, so an
 * xterm.js terminal that is not exposed can still be read.
 */
async function fresh({ xtermHook = false } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(STEP_MS);
  if (xtermHook) {
    await context.addInitScript(() => {
      window.__terms = [];
      let T;
      Object.defineProperty(window, "Terminal", {
        configurable: true,
        get: () => T,
        set(v) {
          T = new Proxy(v, {
            construct(target, args, nt) {
              const t = Reflect.construct(target, args, nt);
              window.__terms.push(t);
              return t;
            },
          });
        },
      });
    });
  }
  const page = await context.newPage();
  const gets = [];
  page.on("response", (r) => {
    const req = r.request();
    if (req.method() === "GET" && !r.url().startsWith("data:")) gets.push({ url: r.url(), type: req.resourceType() });
  });
  return { context, page, gets };
}

/** Weight of what a page fetched: each URL fetched again (same cookies), as served, and gzipped. */
async function weigh(context, gets) {
  const files = [];
  const seen = new Set();
  for (const { url, type } of gets) {
    if (seen.has(url) || !["document", "stylesheet", "script", "image", "font", "fetch"].includes(type)) continue;
    seen.add(url);
    const r = await context.request.get(url, { maxRedirects: 0 });
    // Files only: not the page's API calls (JSON), which are data, not weight.
    if (r.status() !== 200 || /json/.test(r.headers()["content-type"] ?? "")) continue;
    const body = await r.body();
    files.push({
      path: new URL(url).pathname,
      type,
      contentEncoding: r.headers()["content-encoding"] ?? null,
      bytes: body.length,
      gzip: gzipSync(body, { level: 9 }).length,
    });
  }
  return {
    files,
    bytes: files.reduce((a, f) => a + f.bytes, 0),
    gzip: files.reduce((a, f) => a + f.gzip, 0),
  };
}

// ---- reading terminals, in the page

/** The cursor line of an xterm.js terminal (`which`: "sallyport" or "hooked"). */
function xtermWait(page, which, pattern, timeout = STEP_MS) {
  return page.waitForFunction(
    ([which, pattern]) => {
      const t = which === "sallyport" ? window.sallyport?.term : window.__terms?.[0];
      if (!t) return false;
      if (which === "sallyport" && window.sallyport.endReason) throw new Error(`session ended: ${window.sallyport.endReason}`);
      const b = t.buffer.active ?? t.buffer; // webssh ships an xterm.js without `buffer.active`
      const line = b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "";
      return new RegExp(pattern, "i").test(line);
    },
    [which, pattern],
    { timeout, polling: 10 },
  );
}

/** shellinabox: the last non-blank line of its console. */
function siabWait(page, pattern, timeout = STEP_MS) {
  return page.waitForFunction(
    (pattern) => {
      const c = document.getElementById("console");
      if (!c) return false;
      const kids = c.children;
      for (let i = kids.length - 1; i >= Math.max(0, kids.length - 80); i--) {
        const text = kids[i].textContent.trimEnd();
        if (text !== "") return new RegExp(pattern, "i").test(text);
      }
      return false;
    },
    pattern,
    { timeout, polling: 10 },
  );
}

async function typeLine(page, text, focus) {
  if (focus) await page.locator(focus).focus();
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

// ---- the three terminals: reach a shell prompt, return the timings (ms)

async function sallyportToPrompt(page, gets) {
  const t0 = Date.now();
  await page.goto(`${s.url}/`);
  await page.locator("#fields:not([disabled])").waitFor();
  await page.fill('input[name="user"]', s.user);
  await page.fill('input[name="password"]', s.password);
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.pathname === "/services");
  await page.locator(`#services li.service a[href="/t/${s.service}"]`).waitFor();
  gets.length = 0; // the page weight is the terminal page's alone
  const t1 = Date.now();
  await page.goto(`${s.url}/t/${s.service}`);
  await xtermWait(page, "sallyport", LOGIN);
  await typeLine(page, "", ".xterm-helper-textarea"); // keep the prefilled login name
  await xtermWait(page, "sallyport", PASSWORD);
  await typeLine(page, s.sshPassword);
  await xtermWait(page, "sallyport", PROMPT);
  const t2 = Date.now();
  return { terminalMs: t2 - t1, withSignInMs: t2 - t0 };
}

async function websshToPrompt(page, url) {
  const t0 = Date.now();
  await page.goto(url);
  await page.fill("#hostname", "127.0.0.1");
  await page.fill("#port", s.sshdPort);
  await page.fill("#username", s.sshUser);
  await page.fill("#password", s.sshPassword);
  await page.click('#connect button[type="submit"]');
  await xtermWait(page, "hooked", PROMPT);
  return { withSignInMs: Date.now() - t0 };
}

async function siabToPrompt(page, url) {
  const t0 = Date.now();
  await page.goto(url);
  await siabWait(page, "password:$");
  await typeLine(page, s.sshPassword);
  await siabWait(page, PROMPT);
  return { withSignInMs: Date.now() - t0 };
}

// ---- throughput

const SEQ_COMMAND = `echo st""art; seq 1 ${SEQ_N}; echo e""nd`; // the quotes keep the echoed command from matching

/**
 * Types the command and presses Enter, noting the page's clock just before
 * the key: every terminal's time runs from there to its `end` marker line.
 */
async function sendSeq(page, focus) {
  if (focus) await page.locator(focus).focus();
  await page.keyboard.type(SEQ_COMMAND);
  await page.evaluate(() => {
    window.__seq.sent = performance.now();
  });
  await page.keyboard.press("Enter");
}

/** xterm.js: counts the lines between the markers as the terminal completes them. */
async function xtermSeq(page, which, focus) {
  await page.evaluate((which) => {
    const term = which === "sallyport" ? window.sallyport.term : window.__terms[0];
    const seq = { counting: false, count: 0, next: 1, last: null, bad: 0, done: false, sent: 0, end: 0 };
    window.__seq = seq;
    term.onLineFeed(() => {
      const b = term.buffer.active ?? term.buffer;
      const line = b.getLine(b.baseY + b.cursorY - 1)?.translateToString(true) ?? "";
      if (!seq.counting) {
        if (line === "start" && !seq.done) seq.counting = true;
        return;
      }
      if (line === "end") {
        seq.counting = false;
        seq.done = true;
        seq.end = performance.now();
        return;
      }
      if (line !== String(seq.next)) seq.bad++;
      seq.count++;
      seq.next++;
      seq.last = line;
    });
  }, which);
  await sendSeq(page, focus);
  await page
    .waitForFunction(() => window.__seq.done, null, { timeout: 180_000, polling: 100 })
    .catch(() => {});
  const r = await page.evaluate(() => ({ ...window.__seq, now: performance.now() }));
  const seconds = ((r.done ? r.end : r.now) - r.sent) / 1000;
  const complete = r.done && r.count === SEQ_N && r.last === String(SEQ_N) && r.bad === 0;
  return { complete, lines: r.count, bad: r.bad, seconds, mbPerSecond: seqBytes(r.count) / 1e6 / seconds };
}

/**
 * shellinabox (its own DOM terminal, which keeps about 2,000 lines): polls
 * the console's last lines every 50 ms for the highest number on a
 * completed line and for the `end` marker.
 */
async function siabSeq(page) {
  await page.evaluate(() => {
    const seq = { done: false, sent: 0, end: 0, highest: 0 };
    window.__seq = seq;
    const timer = setInterval(() => {
      if (!seq.sent) return;
      const kids = document.getElementById("console").children;
      // The last line may be half written; it is counted once the next begins.
      for (let i = Math.max(0, kids.length - 120); i < kids.length - 1; i++) {
        const text = kids[i].textContent.trim();
        if (/^\d+$/.test(text)) {
          seq.highest = Math.max(seq.highest, Number(text));
        } else if (text === "end") {
          seq.done = true;
          seq.end = performance.now();
          clearInterval(timer);
        }
      }
    }, 50);
  });
  await sendSeq(page);
  await page
    .waitForFunction(() => window.__seq.done, null, { timeout: SIAB_SEQ_S * 1000, polling: 200 })
    .catch(() => {});
  const r = await page.evaluate(() => ({ ...window.__seq, now: performance.now() }));
  const seconds = ((r.done ? r.end : r.now) - r.sent) / 1000;
  const complete = r.done && r.highest === SEQ_N;
  return { complete, lines: r.highest, seconds, mbPerSecond: seqBytes(r.highest) / 1e6 / seconds };
}

// ---- one terminal's whole measurement

async function measure(name, { toPrompt, seq, seqRuns, xtermHook = false }) {
  const out = { load: [], seq: [] };
  try {
    for (let i = 0; i < RUNS; i++) {
      const { context, page, gets } = await fresh({ xtermHook });
      try {
        out.load.push(await toPrompt(page, gets));
        if (i === 0) out.weight = await weigh(context, gets);
      } finally {
        await context.close();
      }
    }
    log(`${name}: page load to prompt ${JSON.stringify(out.load)}`);
    for (let i = 0; i < seqRuns; i++) {
      const { context, page, gets } = await fresh({ xtermHook });
      try {
        await toPrompt(page, gets);
        const r = await seq(page);
        out.seq.push(r);
        log(`${name}: seq ${JSON.stringify(r)}`);
      } finally {
        await context.close();
      }
    }
  } catch (e) {
    out.error = String(e?.message ?? e).split("\n")[0];
    log(`${name} failed: ${e?.stack ?? e}`);
  }
  return out;
}

const result = { seqN: SEQ_N, seqBytes: seqBytes(SEQ_N), runs: RUNS, browserVersion: browser.version() };
try {
  if (s.url) {
    result.sallyport = await measure("sallyport", {
      toPrompt: sallyportToPrompt,
      seq: (page) => xtermSeq(page, "sallyport", ".xterm-helper-textarea"),
      seqRuns: SEQ_RUNS,
    });
  }
  if (process.env.WEBSSH_URL) {
    const url = process.env.WEBSSH_URL;
    result.webssh = await measure("webssh", {
      toPrompt: (page) => websshToPrompt(page, url),
      seq: (page) => xtermSeq(page, "hooked", ".xterm-helper-textarea"),
      seqRuns: SEQ_RUNS,
      xtermHook: true,
    });
  }
  if (process.env.SIAB_URL) {
    const url = process.env.SIAB_URL;
    result.shellinabox = await measure("shellinabox", {
      toPrompt: (page) => siabToPrompt(page, url),
      seq: siabSeq,
      seqRuns: 1,
    });
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
