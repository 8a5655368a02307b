// An admin on the admin pages, one journey through the parts STEPS names
// (comma-separated, in order):
// - sessions: the live session of user BOB is listed (service, account,
//   since, bytes); Terminate asks first (Cancel leaves it), then ends it and
//   it leaves the list.
// - users: Lock on user LOCK_USER (confirmed), then LOCKED_FILE is written
//   and the journey waits for CHECKED_FILE (the test tries the user's
//   sign-in meanwhile), then Unlock.
// - connectors: issues an enrolment token for CONNECTOR to serve SERVICE,
//   writes it to TOKEN_FILE (the test starts the connector with it), looks
//   whether a reload shows it again, and waits for CONNECTOR online.
// Starts on the services page (its link to the admin pages); prints what
// each part showed.
import { existsSync, writeFileSync } from "node:fs";
import { cspViolations, env, journey, signIn, STEP_MS } from "./lib.mjs";

/** Waits (as long as two steps may take) for the test to write `path`. */
async function waitForFile(page, path) {
  const deadline = Date.now() + 2 * STEP_MS;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await page.waitForTimeout(50);
  }
}

/** The text of each cell of a table row. */
async function rowCells(row) {
  return row.evaluate((tr) => [...tr.children].map((td) => td.textContent));
}

/** Clicks `button`, answers the page's dialog with `answer` ("yes" or "no"); returns the question. */
async function confirmWith(page, button, answer) {
  await button.click();
  const dialog = page.locator("#confirm[open]");
  await dialog.waitFor();
  const question = await page.locator("#confirm-text").textContent();
  await page.click(answer === "yes" ? "#confirm-yes" : "#confirm-no");
  await dialog.waitFor({ state: "detached" });
  return question;
}

async function sessions(page, s) {
  const bob = env("BOB");
  await page.goto(`${s.url}/admin/sessions`);
  const row = page.locator(`#sessions tr[data-user="${bob}"]`);
  await row.waitFor();
  // The account comes from the client's start event once stored; bytes grow.
  await page.waitForFunction(
    (user) => {
      const tr = document.querySelector(`#sessions tr[data-user="${user}"]`);
      return tr && !tr.querySelector(".account").textContent.startsWith("unknown");
    },
    bob,
    { polling: 100, timeout: STEP_MS },
  );
  const shown = await rowCells(row);
  const stream = await row.getAttribute("data-stream");
  const cancelled = await confirmWith(page, row.locator('button[data-action="terminate"]'), "no");
  const afterCancel = await page.locator(`#sessions tr[data-stream="${stream}"]`).count();
  const question = await confirmWith(page, row.locator('button[data-action="terminate"]'), "yes");
  await page.locator("#done:not([hidden])").waitFor();
  const done = await page.locator("#done").textContent();
  await page.locator(`#sessions tr[data-stream="${stream}"]`).waitFor({ state: "detached" });
  return { shown, stream, cancelled, afterCancel, question, done, csp: await cspViolations(page) };
}

async function users(page, s) {
  const user = env("LOCK_USER");
  await page.goto(`${s.url}/admin/users`);
  const row = page.locator(`#users tr[data-name="${user}"]`);
  await row.waitFor();
  const before = await rowCells(row);
  const lockQuestion = await confirmWith(page, row.locator('button[data-action="lock"]'), "yes");
  await page.locator(`#users tr[data-name="${user}"][data-locked="true"]`).waitFor();
  const locked = await rowCells(row);
  const lockDone = await page.locator("#done").textContent();
  writeFileSync(env("LOCKED_FILE"), "locked\n");
  await waitForFile(page, env("CHECKED_FILE"));
  await confirmWith(page, row.locator('button[data-action="unlock"]'), "yes");
  await page.locator(`#users tr[data-name="${user}"][data-locked="false"]`).waitFor();
  const unlocked = await rowCells(row);
  return { before, lockQuestion, locked, lockDone, unlocked, csp: await cspViolations(page) };
}

async function connectors(page, s) {
  const name = env("CONNECTOR");
  await page.goto(`${s.url}/admin/connectors`);
  await page.fill('#issue input[name="name"]', name);
  await page.fill('#issue input[name="services"]', env("SERVICE"));
  const question = await confirmWith(page, page.locator('#issue button[type="submit"]'), "yes");
  await page.locator("#token:not([hidden])").waitFor();
  const token = await page.locator("#token-value").textContent();
  const tokenFor = await page.locator("#token-for").textContent();
  const pending = await rowCells(page.locator(`#connectors tr[data-name="${name}"]`));
  writeFileSync(env("TOKEN_FILE"), `${token}\n`);
  // Shown once: a reload of the page has it nowhere.
  await page.goto(`${s.url}/admin/connectors`);
  await page.locator(`#connectors tr[data-name="${name}"]`).waitFor();
  const tokenShownAgain = (await page.content()).includes(token);
  const online = page.locator(`#connectors tr[data-name="${name}"][data-online="true"]`);
  await online.waitFor({ timeout: 2 * STEP_MS });
  return {
    question,
    tokenFor,
    tokenLength: token.length,
    pending,
    tokenShownAgain,
    online: await rowCells(online),
    csp: await cspViolations(page),
  };
}

const PARTS = { sessions, users, connectors };

await journey(async ({ s, page, seen }) => {
  await signIn(page, s);
  // The services page links an admin to the admin pages.
  await page.locator("#admin:not([hidden])").waitFor();
  const out = { adminLink: await page.locator("#admin").getAttribute("href") };
  for (const step of env("STEPS").split(",")) out[step] = await PARTS[step](page, s);
  return { ...out, consoleErrors: seen.consoleErrors };
});
