/* The page's elements by role, and the few DOM helpers every part uses. Text from the network is
 * only ever set with textContent, never parsed as HTML. */
import { setText } from "./i18n.js";

function $(id) { return document.getElementById(id); }

export const ui = {
  start: $("start"), startForm: $("start-form"), topic: $("topic"), name: $("name"), chatFields: $("chat-fields"),
  consentField: $("consent-field"), consent: $("consent"), privacyLink: $("privacy-link"),
  startError: $("start-error"), startStatus: $("start-status"), startButton: $("start-button"),
  offlineForm: $("offline-form"), offlineMessage: $("offline-message"), offlineName: $("offline-name"),
  offlineContact: $("offline-contact"), offlineError: $("offline-error"), offlineDone: $("offline-done"),
  offlineButton: $("offline-button"),
  chat: $("chat"), number: $("chat-number"), state: $("chat-state"), queue: $("queue"), connection: $("connection"),
  conversation: $("conversation"), log: $("log"), typing: $("typing"), chatError: $("chat-error"),
  composer: $("composer"), message: $("message"), send: $("send-button"), end: $("end-button"),
  attachButton: $("attach-button"), attach: $("attach"),
  endConfirm: $("end-confirm"), endConfirmText: $("end-confirm-text"), endYes: $("end-yes"), endNo: $("end-no"),
  ended: $("ended"), endedText: $("ended-text"), newChat: $("new-chat-button"), transcript: $("transcript-link"),
  transcriptHtml: $("transcript-html-link"),
  feedbackForm: $("feedback-form"), feedbackComment: $("feedback-comment"), feedbackError: $("feedback-error"),
  feedbackDone: $("feedback-done"), feedbackButton: $("feedback-button"),
  erase: $("erase"), eraseButton: $("erase-button"), eraseConfirm: $("erase-confirm"), eraseQuestion: $("erase-question"),
  eraseYes: $("erase-yes"), eraseNo: $("erase-no"), eraseResult: $("erase-result"),
  serviceName: $("service-name"), welcome: $("welcome"), review: $("review-notice"), logo: $("logo"), language: $("language"),
  quickExit: $("quick-exit"), danger: $("emergency-banner")
};

export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) { node.className = className; }
  if (text !== undefined) { node.textContent = text; }
  return node;
}

/** Show a translated message in node (hidden when key is empty). */
export function say(node, key, params, fallback) {
  setText(node, key, params, fallback);
  node.hidden = !key;
}

/** A question asked on the page under the button that opened it (no native confirm(): it can't be
 * styled, translated or shown in the widget's iframe). The question takes the focus. */
export function openQuestion(button, box, question) {
  box.hidden = false;
  button.setAttribute("aria-expanded", "true");
  question.focus();
}

/** Put the question away; with refocus, the focus goes back to the button that asked it. */
export function closeQuestion(button, box, refocus) {
  if (box.hidden) { return; }
  box.hidden = true;
  button.setAttribute("aria-expanded", "false");
  if (refocus) { button.focus(); }
}
