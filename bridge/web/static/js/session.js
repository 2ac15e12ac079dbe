/* The chat in this tab (sessionStorage: this tab only, gone when it closes), so a reload or a
 * lost connection resumes the same chat. */
import { app } from "./state.js";
import { chatPath } from "./api.js";

const STORE_KEY = "precinct.chat.v1";

export function loadSession() {
  try {
    const raw = window.sessionStorage.getItem(STORE_KEY);
    if (!raw) { return null; }
    const s = JSON.parse(raw);
    if (!s || typeof s.chat_id !== "string" || typeof s.token !== "string") { return null; }
    s.frames = Array.isArray(s.frames) ? s.frames : [];
    s.outbox = Array.isArray(s.outbox) ? s.outbox : [];
    s.lastSeq = 0;   // recomputed from the frames actually rendered
    return s;
  } catch (e) {
    return null;
  }
}

/**
 * A practice chat handed over by the supervisors' console (#practice=<chat id>.<number>.<token>): this tab
 * becomes its citizen. The fragment never reaches a server; it is taken out of the address bar and the
 * history at once. Returns whether there was one.
 */
export function takeHandOver() {
  const found = /^#practice=([A-Za-z0-9_-]+)\.([0-9]+)\.([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (!found) { return false; }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  const session = { chat_id: found[1], number: Number(found[2]), token: found[3], state: "waiting",
                    lastSeq: 0, frames: [], outbox: [] };
  const url = new URL(chatPath(session, "/ws"), window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  session.ws_url = url.toString();
  app.session = session;
  saveSession();
  return true;
}

export function saveSession() {
  if (!app.session) { return; }
  try {
    window.sessionStorage.setItem(STORE_KEY, JSON.stringify(app.session));
  } catch (e) {
    // Storage full or disabled: the chat still works, it just cannot be resumed after a reload.
  }
}

export function clearSession() {
  try { window.sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ }
  app.session = null;
}

/** Quick exit: nothing of the chat may stay in this tab's storage (nor anything else of ours). */
export function forgetEverything() {
  app.session = null;
  for (const storage of ["sessionStorage", "localStorage"]) {
    try { window[storage].clear(); } catch (e) { /* storage disabled: nothing stored */ }
  }
}

export function newClientId() {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
}
