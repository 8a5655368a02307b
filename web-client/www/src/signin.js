// Sign-in page: posts the form as JSON; the relay sets the session cookie.
import { login, ssoProviders } from "./api.js";

const form = document.getElementById("signin");
const fields = document.getElementById("fields");
const error = document.getElementById("error");
const codeField = document.getElementById("code-field");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = new FormData(form);
  error.hidden = true;
  fields.disabled = true;
  try {
    const code = codeField.hidden ? undefined : String(data.get("code")).trim();
    await login(String(data.get("user")).trim(), String(data.get("password")), code);
    location.assign("/services");
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    fields.disabled = false;
    // The account has a second factor: keep the password, ask for the code.
    if (/one-time code/.test(e.message)) {
      codeField.hidden = false;
      form.elements.code.value = "";
      form.elements.code.focus();
      return;
    }
    form.elements.password.value = "";
    form.elements.password.focus();
  }
});
fields.disabled = false;
form.elements.user.focus();

// One button (a plain link: the relay redirects to the provider) per provider.
ssoProviders()
  .then((providers) => {
    const nav = document.getElementById("sso");
    for (const p of providers ?? []) {
      const a = document.createElement("a");
      a.className = "button sso-button";
      a.href = `/auth/oidc/${encodeURIComponent(p.name)}`;
      a.textContent = p.label;
      a.dataset.provider = p.name;
      nav.append(a);
    }
    nav.hidden = nav.childElementCount === 0;
  })
  .catch(() => {});
