// Terminal page (/t/SERVICE): xterm.js in the whole window, driven by the
// wasm SSH client. SSH runs here, end to end with sshd: the relay and the
// connector carry only ciphertext. The client checks sshd's host key against
// the keys the connector reported (from /api/services).
//
// Tests read the page through `window.sallyport` (the xterm Terminal, the
// connection state, the end reason) instead of scraping the DOM.
import { FitAddon } from "@xterm/addon-fit";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import "./terminal.css";
import init, { start_session } from "./sallyport_web.js";
import { me, services, signedIn } from "./api.js";

const WASM_URL = "/assets/sallyport_web_bg.wasm";
/** Lines kept above the screen. */
const SCROLLBACK = 10000;
/**
 * Most output bytes handed to xterm in one write (xterm parses it in slices
 * and yields in between): what is in xterm's hands besides our queue. Half
 * the current high-water mark when that is less. Large writes are what make
 * a fast stream fast: 64 KiB writes under a 256 KiB mark made `seq 1 200000`
 * about 20% slower.
 */
const MAX_WRITE = 256 * 1024;
/**
 * Output queued for xterm above which the session stops reading from sshd
 * (SSH's flow control then holds the rest at the server), and below a
 * quarter of which it reads again: a flood (`cat` of a huge file) costs
 * bounded memory. The mark follows how fast xterm has been taking output,
 * so the queue holds about RENDER_BUDGET_MS of it (text renders ten times
 * faster than binary garbage), between MIN_HIGH_WATER and MAX_HIGH_WATER
 * bytes. The SSH window the client grants follows the same speed (ssh/pace.rs,
 * measured from how fast this queue drains); with it this bounds how much
 * still scrolls by after Ctrl-C.
 */
const RENDER_BUDGET_MS = 250;
const MIN_HIGH_WATER = 8 * 1024;
const MAX_HIGH_WATER = 1024 * 1024;
/** Writes shorter than this say little about xterm's speed. */
const RATE_SAMPLE_MIN = 4 * 1024;
const STATUS_TEXT = {
  connecting: "connecting…",
  authenticating: "authenticating",
  connected: "connected",
  stalled: "stalled",
  closed: "closed",
  error: "error",
};

const service = decodeURIComponent(location.pathname.replace(/^\/t\//, ""));
const statusEl = document.getElementById("status");
const endEl = document.getElementById("end");
const reconnectBtn = document.getElementById("reconnect");
document.getElementById("service").textContent = service;
document.title = `${service} · Sallyport`;

const term = new Terminal({
  scrollback: SCROLLBACK,
  cursorBlink: true,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Cascadia Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  theme: { background: "#10141c", foreground: "#d8dee9", cursor: "#7fd1b9" },
  // For the Unicode 11 widths below (term.unicode is a proposed API).
  allowProposedApi: true,
});
const fit = new FitAddon();
term.loadAddon(fit);
// Character widths as the server's wcwidth has them (emoji are two cells):
// xterm's built-in tables are Unicode 6's.
term.loadAddon(new Unicode11Addon());
term.unicode.activeVersion = "11";
term.open(document.getElementById("terminal"));
fit.fit();
term.focus();

/** What the page shows, for people (the header) and for tests. */
const state = {
  term,
  service,
  /** One of STATUS_TEXT's keys. */
  status: "connecting",
  message: "",
  /** Every state in order, so a test can tell "never connected". */
  statusHistory: [],
  /** The final line of the last session, or null while it runs. */
  endReason: null,
  /** Session bytes received from sshd (for throughput measurements). */
  bytesIn: 0,
  /** Bytes xterm has finished parsing (received ones, and the page's own lines). */
  bytesShown: 0,
  /** The output queue's bounds, for tests that check what is in flight. */
  limits: { highWater: MAX_HIGH_WATER, maxWrite: MAX_WRITE },
  session: null,
};
window.sallyport = state;

// Loading the client starts at once, in parallel with the API calls.
const clientReady = init({ module_or_path: WASM_URL });

/**
 * Output for xterm, in order and batched: while xterm parses one write,
 * what arrives meanwhile is gathered into the next (up to MAX_WRITE bytes).
 * A fast stream (`seq`, `cat`) then costs one write per parse instead of one
 * per SSH packet, which measured 15-25% faster in tests/browser's `seq`.
 *
 * The bytes are decoded here, as one stream: a character split between two
 * SSH packets waits for its last byte instead of being lost (xterm 6.0.0's
 * own UTF-8 decoder drops one whose first part ends in the byte 0x80,
 * xterm.js issue 6003, fixed after 6.0.0 but in no stable release yet).
 * Invalid UTF-8 is shown as U+FFFD.
 */
const output = {
  decoder: new TextDecoder("utf-8"),
  /** The current high-water mark (see MAX_HIGH_WATER). */
  highWater: 128 * 1024,
  queue: [],
  queued: 0,
  busy: false,
  waiters: [],
  push(bytes) {
    this.queue.push(bytes);
    this.queued += bytes.length;
    if (!this.busy) this.flush();
  },
  /** Nothing while there is room; else a promise for when there is again. */
  drained() {
    if (this.queued < this.highWater) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  },
  flush() {
    if (this.queued <= this.highWater / 4 && this.waiters.length > 0) {
      for (const resolve of this.waiters.splice(0)) resolve();
    }
    if (this.queue.length === 0) {
      this.busy = false;
      return;
    }
    let n = 0;
    let take = 0;
    // Half the queue's mark at most: a slow write is what Ctrl-C waits for.
    const most = Math.min(MAX_WRITE, this.highWater / 2);
    while (take < this.queue.length && (take === 0 || n + this.queue[take].length <= most)) {
      n += this.queue[take].length;
      take++;
    }
    const parts = this.queue.splice(0, take);
    this.queued -= n;
    let data = parts[0];
    if (parts.length > 1) {
      data = new Uint8Array(n);
      let at = 0;
      for (const b of parts) {
        data.set(b, at);
        at += b.length;
      }
    }
    this.busy = true;
    const text = this.decoder.decode(data, { stream: true });
    const started = performance.now();
    const done = () => {
      state.bytesShown += n;
      const ms = performance.now() - started;
      if (n >= RATE_SAMPLE_MIN && ms > 0) {
        // Bytes per RENDER_BUDGET_MS at this write's speed, smoothed.
        const budget = (n / ms) * RENDER_BUDGET_MS;
        const next = 0.7 * this.highWater + 0.3 * budget;
        this.highWater = Math.min(MAX_HIGH_WATER, Math.max(MIN_HIGH_WATER, next));
      }
      this.flush();
    };
    if (text === "") queueMicrotask(done);
    else term.write(text, done);
  },
};
const encoder = new TextEncoder();

/**
 * Asks the relay's SSH CA to certify `publicKey` for this service, to log in
 * as `principal` (one of the accounts it maps this person to; the first
 * when undefined).
 */
async function fetchCertificate(publicKey, principal) {
  const resp = await fetch("/api/ssh-cert", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ service, public_key: publicKey, principal }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error ?? `the relay answered ${resp.status}`);
  return body.certificate;
}

function setStatus(s, message = "") {
  state.status = s;
  state.message = message;
  state.statusHistory.push(s);
  statusEl.dataset.state = s;
  statusEl.textContent = message ? `${STATUS_TEXT[s] ?? s}: ${message}` : (STATUS_TEXT[s] ?? s);
  statusEl.title = message;
  if (s === "closed" || s === "error") reconnectBtn.hidden = false;
}

/**
 * `text` with every control character (C0, DEL, C1) replaced by U+FFFD: an
 * end reason may carry a connector's or a server's words, and none of them
 * may reach the terminal as an escape sequence.
 */
function harmless(text) {
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, "\ufffd");
}

function end(reason) {
  reason = harmless(reason);
  state.endReason = reason;
  endEl.textContent = reason;
  endEl.hidden = false;
  reconnectBtn.hidden = false;
  if (state.status !== "closed" && state.status !== "error") setStatus("closed");
  const newline = term.buffer.active.cursorX > 0 ? "\r\n" : "";
  output.push(encoder.encode(`${newline}\x1b[1;33m[${reason}]\x1b[0m\r\n`));
}

async function connect() {
  state.endReason = null;
  endEl.hidden = true;
  reconnectBtn.hidden = true;
  setStatus("connecting");
  let user;
  let svc;
  try {
    const [who, all] = await Promise.all([signedIn(me), signedIn(services), clientReady]);
    user = who.user;
    svc = all.find((s) => s.name === service);
  } catch (e) {
    setStatus("error", e.message);
    return end(e.message);
  }
  if (!svc) {
    setStatus("error", "no such service");
    return end(`no such service "${service}"`);
  }
  if (!svc.online) {
    setStatus("error", "offline");
    return end(`no connector serving "${service}" is online`);
  }
  fit.fit();
  const ws = location.protocol === "https:" ? "wss:" : "ws:";
  try {
    state.session = start_session({
      // opened=1: the relay names the connector carrying the session and its host keys.
      wsUrl: `${ws}//${location.host}/ws/${encodeURIComponent(service)}?opened=1`,
      service,
      // With a certificate, the account the policy maps this user to first;
      // with several, `login as:` offers them all (relays before
      // `ssh_principals` sent only `ssh_principal`).
      user: (svc.ssh_certificates && svc.ssh_principal) || user,
      principals: svc.ssh_certificates
        ? (svc.ssh_principals ?? (svc.ssh_principal ? [svc.ssh_principal] : []))
        : [],
      cols: term.cols,
      rows: term.rows,
      onOutput(bytes) {
        state.bytesIn += bytes.length;
        output.push(bytes);
      },
      outputDrained: () => output.drained(),
      // For services whose sshd trusts the relay's SSH CA: the wasm client
      // makes a key pair and the relay certifies its public half.
      fetchCertificate: svc.ssh_certificates
        ? (publicKey, principal) => fetchCertificate(publicKey, principal)
        : undefined,
      onStatus: setStatus,
      onEnd: end,
    });
  } catch (e) {
    setStatus("error", String(e?.message ?? e));
    end(`the SSH client failed: ${e?.message ?? e}`);
  }
}

/** A line of the page's own (not from the server) in the terminal. */
function notice(text) {
  output.push(encoder.encode(text));
}

term.onData((d) => {
  const refused = state.session?.input(d);
  if (refused) notice(refused);
});
// Default-mode (X10) mouse reports: one byte per character, any value (a
// column past 95 is a byte above 0x7f). Sent as those bytes, not as UTF-8.
term.onBinary((d) => {
  const bytes = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i++) bytes[i] = d.charCodeAt(i) & 0xff;
  const refused = state.session?.inputBytes(bytes);
  if (refused) notice(refused);
});
term.onResize(({ cols, rows }) => state.session?.resize(cols, rows));

// Copy and paste: with a selection, Ctrl/Cmd-C copies (xterm answers the
// browser's copy event) instead of sending ^C; Ctrl/Cmd-V (and the Shift
// variants) paste through the browser's paste event instead of sending ^V.
term.attachCustomKeyEventHandler((ev) => {
  if (ev.type !== "keydown" || !(ev.ctrlKey || ev.metaKey) || ev.altKey) return true;
  const key = ev.key.toLowerCase();
  if (key === "c" && (ev.shiftKey || term.hasSelection())) return false;
  if (key === "v") return false;
  return true;
});

// The terminal follows the window: fit once per frame at most.
let fitPending = false;
new ResizeObserver(() => {
  if (fitPending) return;
  fitPending = true;
  requestAnimationFrame(() => {
    fitPending = false;
    fit.fit();
  });
}).observe(document.getElementById("terminal"));

reconnectBtn.addEventListener("click", () => {
  state.session?.close();
  state.session = null;
  output.push(encoder.encode("\r\n"));
  term.focus();
  connect();
});
addEventListener("pagehide", () => state.session?.close());
// A live session asks before the tab goes (Ctrl-W, closing the window, a
// reload): the browser shows its own "leave site?" question.
addEventListener("beforeunload", (e) => {
  if (state.session && state.endReason === null) e.preventDefault();
});

connect();
