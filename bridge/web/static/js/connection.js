/* The chat's WebSocket: auth with the tab's token and the last seq seen, reconnect with backoff,
 * give up only when the server refuses the token.
 *
 * The pace of the retries (nextRetry, pure so that a test can ask it):
 *   socket lost for any reason ──▶ 1 s, 2 s, 4 s … 30 s (±20 %), back to 1 s once "ready" comes
 *   closed with 1001 ──────────▶ every second (±20 %) for RESTART_WINDOW_MS, then as above: the bridge
 *   ("server restarting")        said it is being restarted (an upgrade, a configuration change), which
 *                                takes seconds; doubling would keep the citizen waiting up to 4 s more
 *                                after it is back. A restart that outlasts the window is an outage. */
import { app } from "./state.js";
import { chatPath } from "./api.js";

export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 30000;
export const RESTART_WINDOW_MS = 60000;
const GOING_AWAY = 1001;

let ws = null;
let retryDelay = RETRY_MIN_MS;
let restartUntil = 0;    // while Date.now() is before this, the bridge is restarting: retry every second
let retryTimer = null;
let hooks = null;   // {frame(frame), gone(), lost(), retrying(seconds)}

export const link = { ready: false };

export function setHooks(h) { hooks = h; }

function socketUrl() {
  // The API's ws_url comes from the configured public URL; if the page was opened under another
  // host name (localhost vs 127.0.0.1), the CSP (connect-src 'self') only allows this page's host.
  const session = app.session;
  let url = new URL(session.ws_url, window.location.href);
  if (url.host !== window.location.host) {
    url = new URL(chatPath(session, "/ws"), window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  }
  return url.toString();
}

export function sendFrame(frame) {
  if (!ws || ws.readyState !== WebSocket.OPEN) { return false; }
  try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
}

export function connected() { return ws !== null; }

export function connect() {
  window.clearTimeout(retryTimer);
  retryTimer = null;
  if (!app.session || ws) { return; }
  let sock;
  try {
    sock = new WebSocket(socketUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  ws = sock;
  sock.onopen = function () {
    sock.send(JSON.stringify({ type: "auth", token: app.session.token, since: app.session.lastSeq }));
  };
  sock.onmessage = function (event) {
    if (sock !== ws) { return; }
    let frame;
    try { frame = JSON.parse(event.data); } catch (e) { return; }
    if (frame && typeof frame === "object") {
      if (frame.type === "ready") { link.ready = true; retryDelay = RETRY_MIN_MS; restartUntil = 0; }
      hooks.frame(frame);
    }
  };
  sock.onclose = function (event) {
    if (sock !== ws) { return; }
    socketGone();
    if (event.code === GOING_AWAY && !restartUntil) { restartUntil = Date.now() + RESTART_WINDOW_MS; }
    if (event.code === 4401 || event.code === 4404) {
      hooks.lost();
    } else if (app.session && app.session.state !== "closed") {
      scheduleReconnect();
    }
  };
  sock.onerror = function () { /* onclose follows */ };
}

function socketGone() {
  ws = null;
  link.ready = false;
  hooks.gone();
}

/** How long to wait before the next attempt, and the doubling delay after it. ``jitter`` in [0, 1). */
export function nextRetry(doubling, restartingUntil, now, jitter) {
  const spread = 0.8 + jitter * 0.4;
  if (now < restartingUntil) { return { wait: RETRY_MIN_MS * spread, doubling: doubling }; }
  const base = Math.min(doubling, RETRY_MAX_MS);
  return { wait: base * spread, doubling: Math.min(doubling * 2, RETRY_MAX_MS) };
}

export function scheduleReconnect() {
  if (retryTimer || !app.session) { return; }
  const next = nextRetry(retryDelay, restartUntil, Date.now(), Math.random());
  retryDelay = next.doubling;
  hooks.retrying(Math.max(1, Math.round(next.wait / 1000)));
  retryTimer = window.setTimeout(function () { retryTimer = null; connect(); }, next.wait);
}

export function reconnectNow() {
  if (!app.session || ws || app.session.state === "closed") { return; }
  window.clearTimeout(retryTimer);
  retryTimer = null;
  retryDelay = RETRY_MIN_MS;
  connect();
}

/** The device says it has no network: the socket is as good as dead (a phone's TCP connection can
 * take minutes to time out). Drop it now and retry at the current pace; "online" reconnects at once. */
export function dropForOffline() {
  if (ws) {
    const old = ws;
    socketGone();
    try { old.close(1000); } catch (e) { /* already closing */ }
  }
  window.clearTimeout(retryTimer);
  retryTimer = null;
  scheduleReconnect();
}

/** Stop for good (new chat, quick exit). */
export function disconnect() {
  window.clearTimeout(retryTimer);
  retryTimer = null;
  restartUntil = 0;
  if (ws) { const old = ws; ws = null; link.ready = false; try { old.close(1000); } catch (e) { /* closing */ } }
}
