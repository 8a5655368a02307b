// Audit log page (admins): the relay's events, filtered, newest last, a
// page at a time; client sessions link to their replay.
import { me, signedIn } from "./api.js";

/** Events per fetch (the relay caps it at 1000). */
const PAGE = 200;

const form = document.getElementById("filters");
const tbody = document.querySelector("#events tbody");
const more = document.getElementById("more");
const error = document.getElementById("error");
let lastSeq = 0;

function query() {
  const data = new FormData(form);
  const q = new URLSearchParams();
  for (const key of ["user", "service", "session", "type"]) {
    const v = String(data.get(key) ?? "").trim();
    if (v) q.set(key, v);
  }
  const since = String(data.get("since") ?? "");
  if (since) q.set("since", String(Date.parse(`${since}Z`)));
  q.set("limit", String(PAGE));
  if (lastSeq) q.set("after", String(lastSeq));
  return q;
}

/** The few words that say what an event was. */
function details(e) {
  switch (e.type) {
    case "sign_in":
      return `${e.ok ? "ok" : `failed: ${e.reason ?? ""}`} from ${e.ip}`;
    case "decision":
      return `${e.stage}: ${e.allowed ? "allow" : "deny"} (${e.reason})`;
    case "cert_issued":
      return `as ${e.principal}`;
    case "stream_closed":
      return `${e.bytes_up} B up, ${e.bytes_down} B down, ${e.millis} ms`;
    case "client":
      return e.event.kind === "end" ? `end: ${e.event.reason}` : e.event.kind;
    default:
      return e.connector ?? e.reason ?? "";
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  return td;
}

function row(r) {
  const e = r.event;
  const tr = document.createElement("tr");
  tr.dataset.type = e.type;
  const user = e.user ?? e.inputs?.user;
  const service = e.service ?? e.inputs?.service;
  const session = cell("");
  if (e.type === "client" && e.session) {
    const a = document.createElement("a");
    a.href = `/replay/${encodeURIComponent(e.session)}`;
    a.textContent = e.session;
    a.className = "replay";
    session.append(a);
  } else {
    session.textContent = e.session ?? "";
  }
  tr.append(
    cell(String(r.seq)),
    cell(new Date(r.at_ms).toISOString().replace("T", " ").slice(0, 19)),
    cell(e.type),
    cell(user),
    cell(service),
    session,
    cell(details(e)),
  );
  return tr;
}

async function load(reset) {
  if (reset) {
    lastSeq = 0;
    tbody.replaceChildren();
  }
  error.hidden = true;
  try {
    const resp = await signedIn(() =>
      fetch(`/api/audit?${query()}`, { credentials: "same-origin" }).then(async (r) => {
        const body = await r.json().catch(() => ({}));
        if (!r.ok) throw new Error(body.error ?? `the relay answered ${r.status}`);
        return body;
      }),
    );
    tbody.append(...resp.map(row));
    if (resp.length) lastSeq = resp.at(-1).seq;
    more.hidden = resp.length < PAGE;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  load(true);
});
more.addEventListener("click", () => load(false));
// Filters can come in the address: /audit?user=alice
for (const [k, v] of new URLSearchParams(location.search)) {
  if (form.elements[k]) form.elements[k].value = v;
}
signedIn(me).then((m) => (document.getElementById("user").textContent = m.user), () => {});
load(true);
