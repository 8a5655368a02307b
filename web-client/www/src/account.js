// Account page: set up one-time codes (TOTP), and change the password. The
// relay makes a secret that stays pending until a code from it is confirmed
// here; a new password needs the current one.
import { changePassword, logout, me, signedIn, totpConfirm, totpSetup } from "./api.js";

const stateEl = document.getElementById("state");
const setupForm = document.getElementById("setup");
const currentField = document.getElementById("current-field");
const enrol = document.getElementById("enrol");
const confirmForm = document.getElementById("confirm");
const done = document.getElementById("done");
const error = document.getElementById("error");

function showError(e) {
  error.textContent = e?.message ?? String(e);
  error.hidden = false;
}

function showState(m) {
  document.getElementById("user").textContent = m.user;
  stateEl.textContent = m.second_factor_enrolled
    ? "One-time codes are on for your account."
    : "One-time codes are off: sign-in asks only for your password.";
  currentField.hidden = !m.second_factor_enrolled;
  document.getElementById("setup-button").textContent = m.second_factor_enrolled
    ? "Replace one-time codes"
    : "Set up one-time codes";
}

setupForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  done.hidden = true;
  try {
    const form = new FormData(setupForm);
    const password = String(form.get("password") ?? "");
    const current = currentField.hidden ? undefined : String(form.get("current")).trim();
    const r = await signedIn(() => totpSetup(password, current));
    document.getElementById("qr").src = r.qr;
    document.getElementById("uri").textContent = r.uri;
    enrol.hidden = false;
    confirmForm.elements.code.focus();
  } catch (e) {
    showError(e);
  }
});

confirmForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  try {
    await signedIn(() => totpConfirm(String(new FormData(confirmForm).get("code")).trim()));
    // The state line first, then "done": whoever sees "done" sees the new state.
    showState(await signedIn(me));
    enrol.hidden = true;
    done.hidden = false;
    setupForm.reset();
    confirmForm.reset();
  } catch (e) {
    showError(e);
  }
});

const passwordForm = document.getElementById("password");
const passwordDone = document.getElementById("password-done");

passwordForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  passwordDone.hidden = true;
  const form = new FormData(passwordForm);
  const next = String(form.get("new") ?? "");
  if (next !== String(form.get("repeat") ?? "")) {
    showError(new Error("the new passwords differ; type the same one twice"));
    return;
  }
  try {
    await signedIn(() => changePassword(String(form.get("current") ?? ""), next));
    passwordForm.reset();
    passwordDone.hidden = false;
  } catch (e) {
    showError(e);
  }
});

document.getElementById("signout").addEventListener("click", async () => {
  await logout().catch(() => {});
  location.replace("/");
});

signedIn(me).then(showState, showError);
