// Shared by the browser journeys: launching Debian's Chromium, signing in,
// reading the terminal. Each journey is a script run by tests/tests/browser.rs
// with its settings in environment variables; it prints one JSON object of
// what it saw on stdout, and the Rust test asserts on it. A script exits
// non-zero only when it could not run the journey at all (a timeout, a crash).

import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

/** The launch flags, exactly (plus a fresh profile and Playwright's pipe). */
export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** How long one step (a navigation, a wait for text) may take. */
export const STEP_MS = 30_000;

export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(`environment variable ${name} is not set`);
  }
  return v;
}

/**
 * The relay and browser settings every journey gets:
 * SALLYPORT_URL (https://localhost:PORT), SALLYPORT_USER, SALLYPORT_PASSWORD,
 * BROWSER_PROFILE (a fresh, empty directory), CHROMIUM (optional).
 */
export function settings() {
  return {
    url: env("SALLYPORT_URL"),
    user: env("SALLYPORT_USER"),
    password: env("SALLYPORT_PASSWORD"),
    profile: env("BROWSER_PROFILE"),
    chromium: process.env.CHROMIUM || "/usr/bin/chromium",
  };
}

/**
 * Starts Chromium with a fresh profile; returns the context and its page.
 * The page records Content-Security-Policy violations, console errors and
 * every URL it navigated to.
 */
export async function launch(s, { width = 1000, height = 700 } = {}) {
  const context = await chromium.launchPersistentContext(s.profile, {
    executablePath: s.chromium,
    // Our flags and nothing else: Playwright's own defaults are left out.
    ignoreDefaultArgs: true,
    args: [...FLAGS, `--user-data-dir=${s.profile}`, "--remote-debugging-pipe", "about:blank"],
    ignoreHTTPSErrors: true, // the relay's certificate is self-signed
    viewport: { width, height },
    timeout: STEP_MS,
  });
  context.setDefaultTimeout(STEP_MS);
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  if (process.env.SALLYPORT_WASM_DIR) await useWasmFrom(context, process.env.SALLYPORT_WASM_DIR);
  const page = context.pages()[0] ?? (await context.newPage());
  const seen = { urls: [], consoleErrors: [] };
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) seen.urls.push(f.url());
  });
  page.on("console", (m) => {
    if (m.type() === "error") seen.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  return { context, page, seen };
}

/**
 * For developing the wasm client: serves `sallyport_web.js` and
 * `sallyport_web_bg.wasm` from `dir` (a fresh wasm-bindgen output) instead
 * of the relay's embedded copies, so a new client can be tried without
 * rebuilding the relay. Never set in CI, which tests what the relay embeds.
 */
async function useWasmFrom(context, dir) {
  const types = { "sallyport_web.js": "text/javascript", "sallyport_web_bg.wasm": "application/wasm" };
  for (const [name, contentType] of Object.entries(types)) {
    const body = readFileSync(`${dir}/${name}`);
    await context.route(`**/assets/${name}`, (route) => route.fulfill({ contentType, body }));
  }
}

/** The path of the page's URL (`/services`, `/t/web1`). */
export function pathOf(page) {
  return new URL(page.url()).pathname;
}

/** Fills and submits the sign-in form; returns once the browser has left it or shown an error. */
export async function signIn(page, s, password = s.password) {
  await page.goto(`${s.url}/`);
  await page.locator("#fields:not([disabled])").waitFor();
  await page.fill('input[name="user"]', s.user);
  await page.fill('input[name="password"]', password);
  await page.click('button[type="submit"]');
  await Promise.race([
    page.waitForURL((u) => u.pathname !== "/"),
    page.locator("#error:not([hidden])").waitFor(),
  ]);
}

/** The services page's list: [{name, online, state, href}]. */
export async function servicesShown(page) {
  return page.$$eval("#services li.service", (items) =>
    items.map((li) => ({
      name: li.dataset.name,
      online: li.dataset.online === "true",
      state: li.querySelector(".state")?.textContent ?? "",
      href: li.querySelector("a")?.getAttribute("href") ?? "",
    })),
  );
}

/** Content-Security-Policy violations the page reported. */
export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations ?? []);
}

/** Every line of the terminal's buffer (scrollback and screen), right-trimmed. */
export async function terminalLines(page) {
  return page.evaluate(() => {
    const b = window.sallyport.term.buffer.active;
    const out = [];
    for (let i = 0; i < b.length; i++) out.push(b.getLine(i)?.translateToString(true) ?? "");
    return out;
  });
}

/** The line the cursor is on. */
export async function cursorLine(page) {
  return page.evaluate(() => {
    const b = window.sallyport.term.buffer.active;
    return b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? "";
  });
}

/** The page's session state: status, history of states, end reason, size. */
export async function sessionState(page) {
  return page.evaluate(() => {
    const s = window.sallyport;
    return {
      status: s.status,
      message: s.message,
      statusHistory: s.statusHistory,
      endReason: s.endReason,
      cols: s.term.cols,
      rows: s.term.rows,
    };
  });
}

/** Waits until `pred(lines)` holds for the terminal's buffer; returns the lines. */
export async function waitForTerminal(page, what, pred, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const lines = await terminalLines(page);
    if (pred(lines)) return lines;
    if (Date.now() > deadline) {
      const tail = lines.filter((l) => l !== "").slice(-15).join("\n");
      throw new Error(`timed out waiting for ${what}; the terminal ends with:\n${tail}`);
    }
    await page.waitForTimeout(50);
  }
}

/** Types into the terminal as a person would (through xterm's textarea). */
export async function type(page, text) {
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.type(text);
}

export async function pressEnter(page) {
  await page.locator(".xterm-helper-textarea").focus();
  await page.keyboard.press("Enter");
}

/**
 * Presses Enter at a prompt and waits until the terminal has moved past it
 * (the cursor is on a later line) or the session has ended, so the next
 * look at the cursor line does not see the old prompt.
 */
export async function submit(page) {
  const row = () =>
    page.evaluate(() => {
      const b = window.sallyport.term.buffer.active;
      return { at: b.baseY + b.cursorY, ended: window.sallyport.endReason !== null };
    });
  const before = (await row()).at;
  await pressEnter(page);
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const now = await row();
    if (now.at > before || now.ended) return;
    if (Date.now() > deadline) throw new Error("the terminal did not move past the prompt");
    await page.waitForTimeout(20);
  }
}

/**
 * Runs a journey: prints its result as JSON, or the error and exit code 1.
 * The browser is always closed.
 */
export async function journey(fn) {
  const s = settings();
  let ctx;
  try {
    ctx = await launch(s);
    const result = await fn({ s, ...ctx });
    // For a person checking the page: SCREENSHOT=file.png keeps the last view.
    if (process.env.SCREENSHOT) await ctx.page.screenshot({ path: process.env.SCREENSHOT });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } catch (e) {
    process.stderr.write(`journey failed: ${e?.stack ?? e}\n`);
    if (ctx) {
      process.stderr.write(`pages visited: ${ctx.seen.urls.join(" ")}\n`);
      process.stderr.write(`console errors: ${JSON.stringify(ctx.seen.consoleErrors)}\n`);
      const state = await ctx.page
        .evaluate(() => {
          const s = window.sallyport;
          return s && { status: s.status, message: s.message, history: s.statusHistory, end: s.endReason };
        })
        .catch(() => null);
      if (state) process.stderr.write(`terminal page state: ${JSON.stringify(state)}\n`);
    }
    process.exitCode = 1;
  } finally {
    await ctx?.context.close().catch(() => {});
  }
}

/** Opens the terminal page of `service` (signed in already) and waits for xterm. */
export async function openTerminal(page, s, service) {
  await page.goto(`${s.url}/t/${service}`);
  await page.locator(".xterm .xterm-screen").waitFor();
  await page.waitForFunction(() => window.sallyport);
}

const LOGIN_PROMPT = /login as:/i;
const PASSWORD_PROMPT = /password[^:]*:\s*$/i;

/**
 * Answers the terminal's login prompts: keeps the prefilled login name or
 * replaces it with `loginName`, then types `password` at the password
 * prompt. Returns the prefilled name as shown.
 */
export async function sshLogin(page, { password, loginName }) {
  await waitForTerminal(page, "the login prompt", (lines) => lines.some((l) => LOGIN_PROMPT.test(l)));
  const line = await cursorLine(page);
  const prefilled = line.replace(/^.*login as:\s*/i, "");
  if (loginName !== undefined) {
    await page.locator(".xterm-helper-textarea").focus();
    for (let i = 0; i < prefilled.length; i++) await page.keyboard.press("Backspace");
    await type(page, loginName);
  }
  await submit(page);
  await waitForPasswordPrompt(page);
  await type(page, password);
  await submit(page);
  return prefilled;
}

/** Waits until the cursor is at a password prompt, or the session ended. */
export async function waitForPasswordPrompt(page, timeout = STEP_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (PASSWORD_PROMPT.test(await cursorLine(page))) return true;
    if (await page.evaluate(() => window.sallyport.endReason !== null)) return false;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for a password prompt; the cursor line is: ${await cursorLine(page)}`);
    }
    await page.waitForTimeout(50);
  }
}

/** Waits for a shell prompt (a cursor line ending in `$` or `#`). */
export async function waitForShell(page) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    if (/[$#]\s*$/.test(await cursorLine(page))) return;
    const ended = await page.evaluate(() => window.sallyport.endReason);
    if (ended !== null) throw new Error(`the session ended before a shell prompt: ${ended}`);
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for a shell prompt; the cursor line is: ${await cursorLine(page)}`);
    }
    await page.waitForTimeout(50);
  }
}

/** Types a command and Enter, then waits for a line matching `want`; returns that line. */
export async function run(page, command, want, timeout = STEP_MS) {
  await type(page, command);
  await pressEnter(page);
  const lines = await waitForTerminal(
    page,
    `output matching ${want} from \`${command}\``,
    (ls) => ls.some((l) => want.test(l)),
    timeout,
  );
  return lines.filter((l) => want.test(l)).at(-1);
}

/**
 * On the OpenID provider's own pages (oidc-provider's development login and
 * consent pages): signs in as `s.user` with `s.password`, confirms the
 * consent page when it is shown, and resolves once the browser is back on
 * the relay (`s.url`'s origin).
 */
export async function signInAtProvider(page, s) {
  const relayOrigin = new URL(s.url).origin;
  await page.locator('input[name="login"]').waitFor();
  await page.fill('input[name="login"]', s.user);
  await page.fill('input[name="password"]', s.password);
  const back = page.waitForURL((u) => u.origin === relayOrigin);
  await page.click('button[type="submit"]');
  const consent = page.locator('input[name="prompt"][value="consent"]');
  await Promise.race([back, consent.waitFor({ state: "attached" })]);
  if (new URL(page.url()).origin !== relayOrigin) {
    await page.click('button[type="submit"]');
  }
  await back;
}
