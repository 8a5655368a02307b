// Admin pages: users, connectors, devices and live sessions, one part per
// path (/admin/users ...). Every action asks in a dialog first, then runs the
// admin command on the relay (which records it as done by this admin).
import { me, request as call, signedIn } from "./api.js";

/** The admin API (members of the admin group only). */
const name = (n) => encodeURIComponent(n);
const admin = {
  /** `part`: users, connectors, devices or sessions. */
  list: (part) => call("GET", `/api/admin/${part}`),
  lock: (user) => call("POST", `/api/admin/users/${name(user)}/lock`),
  unlock: (user) => call("POST", `/api/admin/users/${name(user)}/unlock`),
  signOut: (user) => call("POST", `/api/admin/users/${name(user)}/sign-out`),
  /** `body`: { services, ttl_secs, replace }; the answer carries the token, once. */
  issueToken: (connector, body) => call("POST", `/api/admin/connectors/${name(connector)}/token`, body),
  revokeConnector: (connector) => call("POST", `/api/admin/connectors/${name(connector)}/revoke`),
  revokeDevice: (device) => call("POST", `/api/admin/devices/${name(device)}/revoke`),
  terminate: (stream) => call("POST", `/api/admin/sessions/${name(stream)}/terminate`),
};

/** How often the connectors and live sessions refresh while shown. */
const REFRESH_MS = 2000;

const PARTS = ["users", "connectors", "devices", "sessions"];
const part = PARTS.find((p) => location.pathname === `/admin/${p}`) ?? "users";
const section = document.getElementById(part);
const tbody = section.querySelector("tbody");
const error = document.getElementById("error");
const done = document.getElementById("done");
const empty = document.getElementById("empty");
const dialog = document.getElementById("confirm");

function showError(e) {
  error.textContent = e?.message ?? String(e);
  error.hidden = false;
}

/** Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC). */
function time(secs) {
  return secs ? new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

/** Asks `question` in the page's dialog; resolves to true when confirmed. */
function confirmed(question, yes) {
  document.getElementById("confirm-text").textContent = question;
  document.getElementById("confirm-yes").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

/** A button that asks `question`, then runs `act` and shows what it did. */
function action(label, question, act) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = label.toLowerCase();
  b.addEventListener("click", async () => {
    if (!(await confirmed(question, label))) return;
    error.hidden = true;
    done.hidden = true;
    try {
      const r = await signedIn(act);
      done.textContent = r?.message ?? `${label}: done`;
      done.hidden = false;
    } catch (e) {
      showError(e);
    }
    await refresh();
  });
  return b;
}

function actions(...buttons) {
  const td = document.createElement("td");
  td.className = "actions";
  td.append(...buttons);
  return td;
}

const ROWS = {
  users: (u) => {
    const tr = document.createElement("tr");
    tr.dataset.name = u.name;
    tr.dataset.locked = String(u.locked_since !== null);
    const lock = u.locked_since === null
      ? action("Lock", `Lock ${u.name}? Their sign-ins and live sessions end now, and they cannot sign in until unlocked.`, () => admin.lock(u.name))
      : action("Unlock", `Unlock ${u.name}? They may sign in again.`, () => admin.unlock(u.name));
    tr.append(
      cell(u.name),
      cell(u.groups.join(", ")),
      cell(u.sso_provider ? `single sign-on (${u.sso_provider})` : "local password"),
      cell(u.totp ? "on" : "off"),
      cell(u.locked_since === null ? "" : time(u.locked_since), "locked"),
      cell(u.live_sessions === null ? "" : String(u.live_sessions), "live"),
      actions(
        lock,
        action("Sign out", `Sign ${u.name} out everywhere? Their sign-ins and live sessions end now.`, () =>
          admin.signOut(u.name),
        ),
      ),
    );
    return tr;
  },
  connectors: (c) => {
    const tr = document.createElement("tr");
    tr.dataset.name = c.name;
    tr.dataset.online = String(c.connections > 0);
    const announced = c.announced.map((s) => (s.granted ? s.name : `${s.name} (refused: not granted)`));
    tr.append(
      cell(c.name),
      cell(c.state),
      cell(c.connections > 0 ? `online (${c.connections})` : "offline", "online"),
      cell(c.versions.join(", ")),
      cell(c.granted.join(", ") + (c.grants_migrated ? " (kept from before grants)" : "")),
      cell(announced.join(", ")),
      cell(time(c.last_seen)),
      actions(
        ...(c.state === "revoked"
          ? []
          : [
              action("Revoke", `Revoke connector ${c.name}? Its certificate stops working and its connections close.`, () =>
                admin.revokeConnector(c.name),
              ),
            ]),
      ),
    );
    return tr;
  },
  devices: (d) => {
    const tr = document.createElement("tr");
    tr.dataset.name = d.name;
    const attrs = Object.entries(d.attributes).map(([k, v]) => `${k}=${v}`);
    tr.append(
      cell(d.name),
      cell(d.revoked ? "revoked" : "active"),
      cell(attrs.join(", ")),
      cell(time(d.created)),
      cell(time(d.expires)),
      actions(
        ...(d.revoked
          ? []
          : [
              action("Revoke", `Revoke device ${d.name}? Its certificate no longer counts as a device.`, () =>
                admin.revokeDevice(d.name),
              ),
            ]),
      ),
    );
    return tr;
  },
  sessions: (s) => {
    const tr = document.createElement("tr");
    tr.dataset.stream = s.stream;
    tr.dataset.user = s.user;
    tr.append(
      cell(s.user, "user"),
      cell(s.service, "service"),
      cell(s.account ?? "unknown (its client has not said)", "account"),
      cell(time(s.since), "since"),
      cell(bytes(s.bytes_up), "up"),
      cell(bytes(s.bytes_down), "down"),
      actions(
        action("Terminate", `End ${s.user}'s session to ${s.service} now? Their terminal shows it was ended by an admin.`, () =>
          admin.terminate(s.stream),
        ),
      ),
    );
    return tr;
  },
};

async function refresh() {
  try {
    const list = await signedIn(() => admin.list(part));
    tbody.replaceChildren(...list.map(ROWS[part]));
    empty.hidden = list.length > 0;
  } catch (e) {
    showError(e);
  }
}

if (part === "connectors") {
  const form = document.getElementById("issue");
  const token = document.getElementById("token");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const name = String(data.get("name") ?? "").trim();
    const services = String(data.get("services") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    const terms = services.length ? `to serve ${services.join(", ")}` : "to serve nothing yet";
    if (!(await confirmed(`Issue an enrolment token for connector ${name}, ${terms}?`, "Issue token"))) return;
    error.hidden = true;
    try {
      const body = { services, ttl_secs: Number(data.get("ttl")), replace: data.get("replace") === "on" };
      const r = await signedIn(() => admin.issueToken(name, body));
      document.getElementById("token-for").textContent = r.connector;
      document.getElementById("token-expires").textContent = time(r.expires);
      document.getElementById("token-value").textContent = r.token;
      token.hidden = false;
      form.reset();
    } catch (e) {
      showError(e);
    }
    await refresh();
  });
  document.getElementById("token-hide").addEventListener("click", () => {
    document.getElementById("token-value").textContent = "";
    token.hidden = true;
  });
}

for (const a of document.querySelectorAll(".tabs a")) {
  if (a.dataset.part === part) a.setAttribute("aria-current", "page");
}
section.hidden = false;
signedIn(me).then((m) => (document.getElementById("user").textContent = m.user), () => {});
refresh();
if (part === "connectors" || part === "sessions") {
  setInterval(() => {
    if (!dialog.open) refresh();
  }, REFRESH_MS);
}
