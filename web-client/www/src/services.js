// Services page: the services the user may reach, online or not, each
// linking to its terminal page. Refreshed while the page is open.
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
  const a = document.createElement("a");
  a.href = `/t/${encodeURIComponent(svc.name)}`;
  a.textContent = svc.name;
  const state = document.createElement("span");
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
  (m) => (document.getElementById("user").textContent = m.user),
  () => {},
);
refresh();
setInterval(refresh, REFRESH_MS);
