// Sign-in page: posts the form as JSON; the relay sets the session cookie.
import { login, ssoProviders } from "./api.js";

const form = document.getElementById("signin");
const fields = document.getElementById("fields");
const error = document.getElementById("error");
const codeField = document.getElementById("code-field");
// Where to go once signed in: back to the CLI's sign-in (`sallyport login`
// sent the browser here with `?next=`), else the services page. Only that
// one path is followed, so the parameter cannot send anyone elsewhere.
const next = new URLSearchParams(location.search).get("next");
const afterSignIn = next?.startsWith("/cli/login?") ? next : "/services";

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = new FormData(form);
  error.hidden = true;
  fields.disabled = true;
  try {
    const code = codeField.hidden ? undefined : String(data.get("code")).trim();
    await login(String(data.get("user")).trim(), String(data.get("password")), code);
    location.assign(afterSignIn);
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

// One button (a plain link: the relay redirects to the provider) per
// provider; `next` goes along so the CLI's sign-in comes back here too. The
// password form goes when the relay has turned password sign-in off.
ssoProviders()
  .then((options) => {
    const nav = document.getElementById("sso");
    const query = next ? `?next=${encodeURIComponent(afterSignIn)}` : "";
    for (const p of options?.providers ?? []) {
      const a = document.createElement("a");
      a.className = "button sso-button";
      a.href = `/auth/oidc/${encodeURIComponent(p.name)}${query}`;
      a.textContent = p.label;
      a.dataset.provider = p.name;
      nav.append(a);
    }
    nav.hidden = nav.childElementCount === 0;
    if (options?.password === false) form.hidden = true;
  })
  .catch(() => {});
