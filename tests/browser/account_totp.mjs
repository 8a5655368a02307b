// A user turns on one-time codes from the account page: the page shows a QR
// code and the otpauth URI; a code computed from the URI's secret (as an
// authenticator app would) turns them on; the next sign-in asks for a code.
import { createHmac } from "node:crypto";
import { journey, pathOf, signIn } from "./lib.mjs";

/** RFC 6238 code of `secret` (base32) for time step `step`. */
function totp(secret, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = mac.readUInt32BE(off) & 0x7fffffff;
  return String(bin % 1_000_000).padStart(6, "0");
}

await journey(async ({ s, page }) => {
  await signIn(page, s);
  await page.click("#user");
  await page.waitForURL((u) => u.pathname === "/account");
  await page.locator("#state:not(:empty)").waitFor();
  const before = (await page.locator("#state").textContent()) ?? "";
  // Turning codes on asks for the password again.
  await page.fill('#setup input[name="password"]', s.password);
  await page.click("#setup-button");
  await page.locator("#enrol:not([hidden])").waitFor();
  const uri = (await page.locator("#uri").textContent()) ?? "";
  const qrLoaded = await page.locator("#qr").evaluate((img) => img.complete && img.naturalWidth > 0);
  const secret = new URL(uri.replace("otpauth://", "https://")).searchParams.get("secret");
  const step = Math.floor(Date.now() / 1000 / 30);
  await page.fill('#confirm input[name="code"]', totp(secret, step));
  await page.click('#confirm button[type="submit"]');
  await page.locator("#done:not([hidden])").waitFor();
  const after = (await page.locator("#state").textContent()) ?? "";

  await page.click("#signout");
  await page.waitForURL((u) => u.pathname === "/");
  await signIn(page, s);
  const askedFor = (await page.locator("#error").textContent()) ?? "";
  // The confirming code is used up; the next step's code is within the
  // accepted skew, as a person who waits for the app's next code would type.
  await page.fill('input[name="code"]', totp(secret, step + 1));
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.pathname === "/services");
  const signedInAgain = pathOf(page);
  return { before, uri, qrLoaded, after, askedFor, signedInAgain };
});
