/* Citizen chat page: speaks visitor API v1 (docs/visitor-api.md). This file wires the parts.
 *
 * POST /api/v1/chats → {chat_id, token, ws_url, number}, kept in sessionStorage so a reload or a
 * lost connection resumes the same chat. WebSocket frames:
 *   out: auth {token, since}, message {client_id, body}, typing {active}, close
 *   in:  ready, message {seq, from, kind, sender, body, ts, target?, client_id?, code?, params?},
 *        status {state, position?, estimate_seconds?, emergency?}, typing {active}, ack, error
 */
import { ui, say } from "./dom.js";
import { initLanguage, setText } from "./i18n.js";
import { app } from "./state.js";
import { loadSession, saveSession, clearSession, takeHandOver } from "./session.js";
import { applyFrame, markRead, resetLog, scrollToEnd } from "./conversation.js";
import * as connection from "./connection.js";
import * as composer from "./composer.js";
import * as ending from "./ending.js";
import * as erasure from "./erasure.js";
import * as site from "./site.js";
import * as pow from "./pow.js";
import { showQueue, renderQueue } from "./queue.js";
import { apiRequest, readJson } from "./api.js";

const STATES = { waiting: "state.waiting", active: "state.active", closed: "state.closed" };

app.embedded = new URLSearchParams(window.location.search).get("embed") === "1";
if (app.embedded) { document.documentElement.classList.add("is-embedded"); }

// ---- chat state --------------------------------------------------------------------------------

function setState(state) {
  if (!STATES[state]) { return; }
  const session = app.session;
  session.state = state;
  saveSession();
  setText(ui.state, STATES[state]);
  ui.state.classList.toggle("is-active", state === "active");
  const closed = state === "closed";
  const focusInComposer = ui.composer.contains(document.activeElement);
  ui.composer.hidden = closed;
  ui.ended.hidden = !closed;
  if (state !== "waiting") { say(ui.queue, ""); }
  if (closed) {
    ending.hideEndConfirm(false);
    // Keyboard and screen-reader users must not be left on a control that just vanished.
    if (focusInComposer) { ui.endedText.focus(); }
    composer.stopTyping();
    composer.showOfficerTyping(false);
    say(ui.connection, "");
    composer.failOutbox("msg.failed_closed");
    if (session.feedbackGiven) { ending.showFeedbackDone(false); }
  }
}

function setEmergency(on) {
  if (on && app.session) { app.session.emergency = true; saveSession(); }
  site.showDanger(!!on);
}

function showChat() {
  const session = app.session;
  ui.start.hidden = true;
  ui.chat.hidden = false;
  if (session.number) { setText(ui.number, "chat.reference", { number: session.number }); } else { setText(ui.number, ""); }
  setState(session.state || "waiting");
  renderQueue();
  setEmergency(session.emergency);
}

// ---- frames from the server ------------------------------------------------------------------------

/** Tell the officer how far the citizen has seen their messages (a read receipt in Element): only while
 * the page is visible, only forward. */
function sendRead() {
  const session = app.session;
  if (!session || document.visibilityState !== "visible") { return; }
  const seq = session.lastOfficerSeq || 0;
  if (seq > (session.readSent || 0) && connection.sendFrame({ type: "read", seq: seq })) { session.readSent = seq; }
}

const hooks = {
  delivered: composer.dropFromOutbox,
  officerSpoke: function () { composer.showOfficerTyping(false); sendRead(); },
  // The bridge's "call the emergency number now" line: the banner stays up for the rest of the chat.
  emergency: function () { setEmergency(true); }
};

function handleFrame(frame) {
  switch (frame.type) {
    case "ready":
      say(ui.connection, "");
      if (typeof frame.number === "number") { app.session.number = frame.number; showChat(); }
      setState(frame.state);
      showQueue(frame);
      if (frame.emergency === true) { setEmergency(true); }
      markRead(frame.read_seq);
      composer.flushOutbox();
      sendRead();
      break;
    case "read":
      markRead(frame.seq);
      break;
    case "message":
      applyFrame(frame, hooks);
      saveSession();
      break;
    case "status":
      setState(frame.state);
      showQueue(frame);
      if (frame.emergency === true) { setEmergency(true); }
      break;
    case "typing":
      composer.showOfficerTyping(frame.active === true);
      break;
    case "ack":
      composer.acked(frame);
      break;
    case "error":
      handleError(frame);
      break;
    default:
      break;   // frames added in later API versions are ignored
  }
}

function handleError(frame) {
  const text = typeof frame.message === "string" && frame.message ? frame.message : "";
  if (frame.error === "rate_limited") {
    composer.rateLimited(frame);   // kept and sent again after retry_after, with a notice
    return;
  }
  composer.messageRefused(frame);
  if (frame.error === "chat_closed") {
    setState("closed");
    return;
  }
  if (frame.error === "unauthorized") { return; }   // the close code that follows says what to do
  say(ui.chatError, "error.problem", { reason: text });
}

function lostChat() {
  // The token was refused: this chat cannot be resumed (e.g. it was removed).
  clearSession();
  resetLog();
  ui.chat.hidden = true;
  ui.start.hidden = false;
  site.showDanger(false);
  say(ui.startError, "start.resume_failed");
  ui.startButton.disabled = false;
  preparePow();
}

connection.setHooks({
  frame: handleFrame,
  lost: lostChat,
  gone: composer.connectionLost,
  retrying: function (seconds) {
    if (navigator.onLine === false) { say(ui.connection, "connection.offline"); } else {
      say(ui.connection, "connection.retry", { count: seconds });
    }
  }
});

function wentOffline() {
  if (!app.session || app.session.state === "closed") { return; }
  composer.markPendingOffline();
  connection.dropForOffline();
}

// ---- starting ----------------------------------------------------------------------------------

// Codes of a proof of work the bridge did not take: solve a fresh challenge and send again.
const POW_RETRY = ["pow_required", "pow_invalid", "pow_forged", "pow_expired", "pow_unsolved", "pow_too_easy",
  "pow_replayed"];
const POW_ATTEMPTS = 3;

/** The proof of work for one POST /api/v1/chats (null when the bridge asks for none). While it is
 * still being solved, a status line says so (announced: it is a live region). */
function proofOfWork() {
  if (!pow.required()) { return Promise.resolve(null); }
  if (!pow.isReady()) { setText(ui.startStatus, "start.preparing"); }
  return pow.take().then(function (solution) {
    setText(ui.startStatus, "");
    return { challenge: solution.challenge, answer: solution.answer };
  }, function (err) {
    setText(ui.startStatus, "");
    throw err;
  });
}

function postChat(request, attempt) {
  return proofOfWork().then(function (proof) {
    const body = proof ? Object.assign({}, request, { pow: proof }) : request;
    return apiRequest("/chats", { method: "POST", json: body });
  }).then(function (response) {
    return readJson(response).then(function (data) {
      if (POW_RETRY.indexOf(data.error) !== -1 && attempt < POW_ATTEMPTS) {
        // The challenge expired, the difficulty rose meanwhile, or the site changed its mind: again.
        app.site.proof_of_work = true;
        pow.forget();
        return postChat(request, attempt + 1);
      }
      return { response: response, data: data };
    });
  });
}

function startChat(event) {
  event.preventDefault();
  say(ui.startError, "");
  if (app.site.require_consent && !ui.consent.checked) {
    say(ui.startError, "consent.required");
    ui.consent.focus();
    return;
  }
  ui.startButton.disabled = true;
  setText(ui.startButton, "start.starting");
  const request = {};
  if (ui.topic.value) { request.topic = ui.topic.value; }
  if (ui.name.value.trim()) { request.display_name = ui.name.value.trim(); }
  if (app.site.require_consent) { request.consent = ui.consent.checked; }
  request.language = document.documentElement.lang || "en";

  postChat(request, 1).then(function (answer) {
    const response = answer.response;
    const data = answer.data;
    if (!response.ok || typeof data.chat_id !== "string" || typeof data.token !== "string") {
      const problem = new Error(data.error || "failed");
      problem.status = response.status;
      throw problem;
    }
    app.session = {
      chat_id: data.chat_id, token: data.token, ws_url: data.ws_url, number: data.number,
      state: "waiting", lastSeq: 0, frames: [], outbox: []
    };
    saveSession();
    resetLog();
    ending.resetFeedback();
    erasure.resetErase();
    showChat();
    connection.connect();
    ui.message.focus();
  }).catch(function (err) {
    const number = app.site.emergency_number;
    if (err instanceof TypeError) { say(ui.startError, "start.unreachable", { number: number }); } else if (
      err.message === "consent_required") { say(ui.startError, "consent.required"); } else if (
      err.message === "blocked") { say(ui.startError, "start.blocked", { number: number }); } else if (
      err.message === "busy" || err.message === "pow_full") {
      // The queue is full: nothing was created; the page offers the phone instead.
      const phone = app.site.phone_number;
      say(ui.startError, phone ? "start.busy_phone" : "start.busy", { number: number, phone: phone });
    } else if (err.message === "rate_limited") {
      // Too many new chats (from this connection, or from everyone): nothing was created.
      const phone = app.site.phone_number;
      say(ui.startError, phone ? "start.rate_limited_phone" : "start.rate_limited", { number: number, phone: phone });
    } else if (err.message === "pow_unsupported") {
      say(ui.startError, "start.prepare_failed", { number: number });
    } else {
      say(ui.startError, "start.failed", { status: err.status || 0, number: number });
    }
    // Ready for the next try: the proof of work for it is solved meanwhile.
    if (pow.required()) { pow.prepare().catch(function () { /* said when the citizen tries again */ }); }
  }).then(function () {
    ui.startButton.disabled = false;
    setText(ui.startButton, "start.button");
  });
}

/** After erasure nothing of the conversation stays on the page or in the tab. */
function forgetErasedChat() {
  connection.disconnect();
  clearSession();
  resetLog();
}

function newChat() {
  ending.hideEndConfirm(false);
  connection.disconnect();
  clearSession();
  resetLog();
  say(ui.chatError, "");
  site.showDanger(false);
  ui.chat.hidden = true;
  ui.start.hidden = false;
  ui.topic.focus();
  preparePow();
}

/** On the start screen, solve the proof of work (if asked for) before the citizen presses Start. */
function preparePow() {
  if (pow.required() && !app.session) { pow.prepare().catch(function () { /* said if Start is pressed */ }); }
}

// ---- wiring ------------------------------------------------------------------------------------

ui.quickExit.addEventListener("click", site.quickExit);
ui.startForm.addEventListener("submit", startChat);
ui.topic.addEventListener("change", site.topicChanged);
ui.offlineForm.addEventListener("submit", site.sendOfflineMessage);
ui.composer.addEventListener("submit", function (event) { event.preventDefault(); composer.sendMessage(); });
ui.message.addEventListener("keydown", function (event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    composer.sendMessage();
  }
});
ui.message.addEventListener("input", composer.onInput);
ui.attachButton.addEventListener("click", function () { ui.attach.click(); });
ui.attach.addEventListener("change", function () {
  Array.from(ui.attach.files || []).forEach(composer.sendFile);
  ui.attach.value = "";
  ui.message.focus();
});
ui.end.addEventListener("click", ending.askToEnd);
ui.endYes.addEventListener("click", function () { ending.endChat(function () { setState("closed"); }); });
ui.endNo.addEventListener("click", function () { ending.hideEndConfirm(true); });
ui.endConfirm.addEventListener("keydown", function (event) {
  if (event.key === "Escape") { event.preventDefault(); ending.hideEndConfirm(true); }
});
ui.transcript.addEventListener("click", ending.downloadTranscript);
ui.transcriptHtml.addEventListener("click", ending.downloadTranscript);
ui.feedbackForm.addEventListener("submit", ending.sendFeedback);
ui.eraseButton.addEventListener("click", erasure.askToErase);
ui.eraseNo.addEventListener("click", function () { erasure.hideEraseConfirm(true); });
ui.eraseConfirm.addEventListener("keydown", function (event) {
  if (event.key === "Escape") { event.preventDefault(); erasure.hideEraseConfirm(true); }
});
ui.eraseYes.addEventListener("click", function () { erasure.eraseChat(forgetErasedChat); });
ui.newChat.addEventListener("click", newChat);
window.addEventListener("online", connection.reconnectNow);
window.addEventListener("offline", wentOffline);
document.addEventListener("visibilitychange", function () {
  if (document.visibilityState === "visible") { connection.reconnectNow(); sendRead(); }
});

site.topicFromUrl();
const ready = Promise.all([initLanguage(ui.language), site.loadSite().then(preparePow)]);

// Resume a chat from this tab (after a reload): render what we had, then ask for what is new. A practice
// chat the console handed over (its link's fragment) is resumed the same way, from nothing.
takeHandOver();
app.session = loadSession();
if (app.session) {
  const cached = app.session.frames;
  app.session.frames = [];
  resetLog();
  cached.forEach(function (frame) {
    if (frame && typeof frame === "object") { applyFrame(frame, hooks); }
  });
  composer.showPending();
  showChat();
  scrollToEnd();
  connection.connect();
}
ready.then(function () { document.documentElement.dataset.ready = "1"; });
