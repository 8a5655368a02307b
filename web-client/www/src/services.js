// Services page: the services the user may reach, online or not, each
// linking to its terminal page; services the policy holds back for now
// (device, place, time, risk) are shown with the reason instead of a link.
// Refreshed while the page is open.
import { logout, me, services, signedIn } from "./api.js";

/** How often the list is fetched again (connectors come and go). */
const REFRESH_MS = 5000;

const list = document.getElementById("services");
const empty = document.getElementById("empty");
const error = document.getElementById("error");

function item(svc) {
  const li = document.createElement("li");
  li.className = "service";
  li.dataset.name = svc.name;
  li.dataset.online = String(svc.online);
  li.dataset.allowed = String(svc.allowed !== false);
  const state = document.createElement("span");
  if (svc.allowed === false) {
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = svc.name;
    state.className = "state denied";
    state.textContent = "not allowed";
    const reason = document.createElement("p");
    reason.className = "reason";
    reason.textContent = svc.reason ?? "";
    li.append(name, state, reason);
    return li;
  }
  const a = document.createElement("a");
  a.href = `/t/${encodeURIComponent(svc.name)}`;
  a.textContent = svc.name;
  state.className = `state ${svc.online ? "online" : "offline"}`;
  state.textContent = svc.online ? "online" : "offline";
  li.append(a, state);
  return li;
}

async function refresh() {
  try {
    const all = await signedIn(services);
    list.replaceChildren(...all.map(item));
    empty.hidden = all.length > 0;
    error.hidden = true;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

document.getElementById("signout").addEventListener("click", async () => {
  await logout().catch(() => {});
  location.replace("/");
});

signedIn(me).then(
  (m) => {
    document.getElementById("user").textContent = m.user;
    // The relay answers 403 there to anyone else; the link only saves typing.
    document.getElementById("admin").hidden = !m.admin;
  },
  () => {},
);
refresh();
setInterval(refresh, REFRESH_MS);
