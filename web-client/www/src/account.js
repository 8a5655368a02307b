// Account page: set up one-time codes (TOTP). The relay makes a secret that
// stays pending until a code from it is confirmed here.
import { logout, me, signedIn, totpConfirm, totpSetup } from "./api.js";

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

document.getElementById("signout").addEventListener("click", async () => {
  await logout().catch(() => {});
  location.replace("/");
});

signedIn(me).then(showState, showError);
