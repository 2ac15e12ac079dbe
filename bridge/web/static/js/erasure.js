/* Erasure: the citizen's right to have what they wrote forgotten (DELETE /api/v1/chats/{id}),
 * asked on the page like ending; a legal hold is explained, not hidden. */
import { ui, say, openQuestion, closeQuestion } from "./dom.js";
import { app } from "./state.js";
import { chatRequest, readJson } from "./api.js";

export function askToErase() {
  openQuestion(ui.eraseButton, ui.eraseConfirm, ui.eraseQuestion);
}

export function hideEraseConfirm(refocus) {
  closeQuestion(ui.eraseButton, ui.eraseConfirm, refocus);
}

export function resetErase() {
  ui.erase.hidden = false;
  hideEraseConfirm(false);
  say(ui.eraseResult, "");
  ui.transcript.parentNode.hidden = false;
}

/** onErased() forgets the conversation in this tab too, once the bridge has erased it. */
export function eraseChat(onErased) {
  const session = app.session;
  if (!session) { return; }
  ui.eraseYes.disabled = true;
  chatRequest(session, "", { method: "DELETE" }).then(function (response) {
    return readJson(response).then(function (data) {
      ui.eraseResult.classList.remove("notice--ok", "notice--error");
      if (response.ok) {
        ui.erase.hidden = true;
        ui.transcript.parentNode.hidden = true;       // nothing left to download
        ui.feedbackForm.hidden = true;
        ui.eraseResult.classList.add("notice--ok");
        say(ui.eraseResult, "erase.done");
        ui.eraseResult.focus();
        onErased();
      } else {
        ui.eraseResult.classList.add("notice--error");
        say(ui.eraseResult, data.error === "legal_hold" ? "erase.held" : "erase.failed");
        hideEraseConfirm(false);
        ui.eraseResult.focus();
      }
    });
  }).catch(function () {
    ui.eraseResult.classList.add("notice--error");
    say(ui.eraseResult, "erase.failed");
  }).then(function () { ui.eraseYes.disabled = false; });
}
