/* Ending a chat: asked on the page (see openQuestion in dom.js), then feedback (1–5 and a
 * comment) and the citizen's own transcript. */
import { ui, say, openQuestion, closeQuestion } from "./dom.js";
import { app } from "./state.js";
import { sendFrame } from "./connection.js";
import { stopTyping } from "./composer.js";
import { saveSession } from "./session.js";
import { chatRequest, readJson } from "./api.js";

export function askToEnd() {
  if (!app.session || app.session.state === "closed") { return; }
  openQuestion(ui.end, ui.endConfirm, ui.endConfirmText);
}

export function hideEndConfirm(refocus) {
  closeQuestion(ui.end, ui.endConfirm, refocus);
}

/** onClosed() runs when the close had to go over HTTP (no socket to bring the status frame). */
export function endChat(onClosed) {
  const session = app.session;
  if (!session || session.state === "closed") { return; }
  // The question stays (and keeps the focus) until the "closed" status moves it to the ended text.
  stopTyping();
  if (sendFrame({ type: "close" })) { return; }
  chatRequest(session, "/close", { method: "POST" }).then(function (response) {
    if (!response.ok) { throw new Error("status " + response.status); }
    onClosed();
  }).catch(function () {
    say(ui.chatError, "end.failed_offline");
  });
}

/** The transcript needs the token: fetch it, then save it from memory. */
export function downloadTranscript(event) {
  event.preventDefault();
  const session = app.session;
  const format = event.currentTarget.dataset.format === "html" ? "html" : "txt";
  if (!session) { return; }
  chatRequest(session, "/transcript?format=" + format)
    .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.blob(); })
    .then(function (blob) {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "chat-" + (session.number || "transcript") + "." + format;
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(function () { URL.revokeObjectURL(a.href); }, 60000);
    })
    .catch(function () { say(ui.chatError, "ended.transcript_failed"); });
}

export function resetFeedback() {
  ui.feedbackForm.hidden = false;
  ui.feedbackForm.reset();
  say(ui.feedbackDone, "");
  say(ui.feedbackError, "");
}

export function sendFeedback(event) {
  event.preventDefault();
  const session = app.session;
  const picked = ui.feedbackForm.querySelector('input[name="rating"]:checked');
  if (!picked) {
    say(ui.feedbackError, "feedback.pick");
    ui.feedbackForm.querySelector('input[name="rating"]').focus();
    return;
  }
  say(ui.feedbackError, "");
  const request = { rating: Number(picked.value) };
  if (ui.feedbackComment.value.trim()) { request.comment = ui.feedbackComment.value.trim(); }
  ui.feedbackButton.disabled = true;
  chatRequest(session, "/feedback", { method: "POST", json: request }).then(function (response) {
    return readJson(response).then(function (data) {
      if (!response.ok && data.error !== "feedback_given") { throw new Error(String(response.status)); }
      session.feedbackGiven = true;
      saveSession();
      showFeedbackDone(true);
    });
  }).catch(function () {
    say(ui.feedbackError, "feedback.failed");
  }).then(function () { ui.feedbackButton.disabled = false; });
}

export function showFeedbackDone(focus) {
  ui.feedbackForm.hidden = true;
  say(ui.feedbackDone, "feedback.thanks");
  if (focus) { ui.feedbackDone.focus(); }
}
