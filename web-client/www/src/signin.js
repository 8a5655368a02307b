// Sign-in page: posts the form as JSON; the relay sets the session cookie.
import { login } from "./api.js";

const form = document.getElementById("signin");
const fields = document.getElementById("fields");
const error = document.getElementById("error");

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = new FormData(form);
  error.hidden = true;
  fields.disabled = true;
  try {
    await login(String(data.get("user")).trim(), String(data.get("password")));
    location.assign("/services");
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    fields.disabled = false;
    form.elements.password.value = "";
    form.elements.password.focus();
  }
});
fields.disabled = false;
form.elements.user.focus();
