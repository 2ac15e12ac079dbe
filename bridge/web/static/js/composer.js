/* Writing: my messages wait in the outbox (kept in the tab's storage) until the server acks them,
 * so messages typed offline go once the connection is back; typing both ways; attachments. */
import { ui, say } from "./dom.js";
import { setText } from "./i18n.js";
import { app } from "./state.js";
import { saveSession, newClientId } from "./session.js";
import { byClientId, pendingItem, setOwnState, scrollToEnd } from "./conversation.js";
import { link, sendFrame } from "./connection.js";
import { chatRequest, readJson } from "./api.js";

const TYPING_IDLE_MS = 3000;          // typing {active:false} after this much quiet
const OFFICER_TYPING_TIMEOUT_MS = 30000;
// Errors the server sends in answer to a message frame (the frame has no client_id).
const MESSAGE_ERRORS = ["message_too_long", "bad_request", "chat_closed", "invalid_json"];

let inflight = [];   // client_ids sent on the current connection, in order, not yet acknowledged

export function dropFromOutbox(clientId) {
  app.session.outbox = app.session.outbox.filter(function (m) { return m.client_id !== clientId; });
  inflight = inflight.filter(function (id) { return id !== clientId; });
  saveSession();
}

export function failOutbox(key) {
  app.session.outbox.forEach(function (m) {
    const li = byClientId.get(m.client_id);
    if (li) { setOwnState(li, key, null, true); li.classList.remove("is-unconfirmed"); }
  });
  app.session.outbox = [];
  inflight = [];
  saveSession();
}

export function connectionLost() {
  inflight = [];          // unacknowledged messages stay in the outbox and go again, same client_id
  showOfficerTyping(false);
  typingActive = false;
}

export function waitingKey() {
  return link.ready || navigator.onLine !== false ? "msg.sending" : "msg.offline_pending";
}

export function markPendingOffline() {
  byClientId.forEach(function (li) {
    if (li.classList.contains("is-unconfirmed")) { setOwnState(li, "msg.offline_pending"); }
  });
}

export function showPending() {
  app.session.outbox.forEach(function (item) {
    if (!byClientId.has(item.client_id)) { pendingItem(item, waitingKey()); }
  });
}

export function flushOutbox() {
  if (!link.ready) { return; }
  app.session.outbox.forEach(function (m) {
    if (inflight.indexOf(m.client_id) !== -1) { return; }
    if (sendFrame({ type: "message", client_id: m.client_id, body: m.body })) {
      inflight.push(m.client_id);
      const li = byClientId.get(m.client_id);
      if (li && li.classList.contains("is-unconfirmed")) { setOwnState(li, "msg.sending"); }
    }
  });
}

export function sendMessage() {
  const body = ui.message.value;
  const session = app.session;
  if (!body.trim() || !session || session.state === "closed") { return; }
  const length = Array.from(body).length;   // code points, as the bridge counts
  if (length > app.site.max_message_chars) {
    say(ui.chatError, "msg.too_long", { length: length, limit: app.site.max_message_chars });
    ui.message.focus();
    return;
  }
  say(ui.chatError, "");
  const item = { client_id: newClientId(), body: body, ts: Date.now() };
  session.outbox.push(item);
  saveSession();
  pendingItem(item, waitingKey());
  scrollToEnd();
  ui.message.value = "";
  stopTyping();
  flushOutbox();
  ui.message.focus();
}

export function acked(frame) {
  const li = byClientId.get(frame.client_id);
  if (li) { setOwnState(li, "msg.delivered"); }
  dropFromOutbox(frame.client_id);
  say(ui.chatError, "");
}

let retryTimer = null;

/** rate_limited: the message was not stored; it stays in the outbox and goes again after retry_after. */
export function rateLimited(frame) {
  const clientId = typeof frame.client_id === "string" ? frame.client_id : inflight[0];
  inflight = inflight.filter(function (id) { return id !== clientId; });
  const seconds = typeof frame.retry_after === "number" && frame.retry_after > 0 ? frame.retry_after : 5;
  say(ui.chatError, "msg.rate_limited", { seconds: seconds });
  if (retryTimer === null) {
    retryTimer = window.setTimeout(function () {
      retryTimer = null;
      say(ui.chatError, "");
      flushOutbox();
    }, Math.min(seconds, 60) * 1000);
  }
}

/** An error frame; returns true when it was about one of my messages (already shown on it). */
export function messageRefused(frame) {
  if (MESSAGE_ERRORS.indexOf(frame.error) === -1) { return false; }
  const clientId = typeof frame.client_id === "string" ? frame.client_id : inflight[0];
  if (!clientId) { return false; }
  inflight = inflight.filter(function (id) { return id !== clientId; });
  const li = byClientId.get(clientId);
  const key = { chat_closed: "msg.failed_closed", message_too_long: "msg.failed_too_long" }[frame.error] || "msg.failed";
  if (li) { setOwnState(li, key, null, true); li.classList.remove("is-unconfirmed"); }
  app.session.outbox = app.session.outbox.filter(function (m) { return m.client_id !== clientId; });
  saveSession();
  return true;
}

// ---- typing ---------------------------------------------------------------------------------------

let typingActive = false;
let typingTimer = null;
let officerTypingTimer = null;

export function stopTyping() {
  window.clearTimeout(typingTimer);
  typingTimer = null;
  if (typingActive) {
    typingActive = false;
    sendFrame({ type: "typing", active: false });
  }
}

export function onInput() {
  if (!link.ready || !app.session || app.session.state === "closed") { return; }
  if (!ui.message.value) { stopTyping(); return; }
  if (!typingActive && sendFrame({ type: "typing", active: true })) { typingActive = true; }
  window.clearTimeout(typingTimer);
  typingTimer = window.setTimeout(stopTyping, TYPING_IDLE_MS);
}

export function showOfficerTyping(active) {
  window.clearTimeout(officerTypingTimer);
  setText(ui.typing, active ? "typing.officer" : "");
  if (active) {
    // If the "stopped typing" frame is lost, do not claim it forever.
    officerTypingTimer = window.setTimeout(function () { setText(ui.typing, ""); }, OFFICER_TYPING_TIMEOUT_MS);
  }
}

// ---- attachments ----------------------------------------------------------------------------------

const UPLOAD_ERRORS = { file_too_large: "attach.too_large", unsupported_type: "attach.bad_type",
                        chat_closed: "msg.failed_closed", not_ready: "attach.not_ready",
                        rate_limited: "attach.rate_limited" };

export function sendFile(file) {
  const session = app.session;
  if (!file || !session || session.state === "closed") { return; }
  const item = { client_id: newClientId(), body: file.name, ts: Date.now() };
  const li = pendingItem(item, "msg.sending");
  if (app.site.max_attachment_bytes && file.size > app.site.max_attachment_bytes) {
    // Said at once, without uploading megabytes over a phone connection first.
    setOwnState(li, "attach.too_large", null, true);
    li.classList.remove("is-unconfirmed");
    return;
  }
  scrollToEnd();
  say(ui.chatError, "");
  chatRequest(session, "/attachments?client_id=" + encodeURIComponent(item.client_id) + "&filename=" +
              encodeURIComponent(file.name), { method: "POST", body: file })
    .then(function (response) {
      if (response.ok) { return; }
      return readJson(response).then(function (data) {
        const key = UPLOAD_ERRORS[data.error] || "attach.failed";
        setOwnState(li, key, null, true);
        li.classList.remove("is-unconfirmed");
      });
    })
    .catch(function () {
      setOwnState(li, "attach.failed", null, true);
      li.classList.remove("is-unconfirmed");
    });
}
