/* Before the chat: the deployment's settings (GET /api/v1/site) on the start screen — name, logo,
 * welcome, emergency number, topics (open now or not), consent — and the quick exit. */
import { ui, say, make } from "./dom.js";
import { app } from "./state.js";
import { forgetEverything } from "./session.js";
import { disconnect } from "./connection.js";
import { apiRequest, readJson } from "./api.js";

let wantedTopic = null;

export function topicFromUrl() {
  let wanted = null;
  try { wanted = new URLSearchParams(window.location.search).get("topic"); } catch (e) { wanted = null; }
  wantedTopic = wanted && wanted.length <= 64 ? wanted : null;
  // Until the configured topics arrive (or if they never do), pass the URL's topic through as is.
  if (!wantedTopic) { return; }
  const label = wantedTopic.replace(/[-_]+/g, " ").trim();
  const option = make("option", "", label.charAt(0).toUpperCase() + label.slice(1));
  option.value = wantedTopic;
  ui.topic.appendChild(option);
  ui.topic.value = wantedTopic;
}

function setEmergencyNumber(number) {
  app.site.emergency_number = number;
  document.querySelectorAll(".js-emergency").forEach(function (a) {
    a.textContent = number;
    a.href = "tel:" + number.replace(/ /g, "");
  });
}

function applySite(data) {
  if (!data || typeof data !== "object") { return; }
  if (typeof data.service_name === "string" && data.service_name) {
    // The agency's own name (white label) is shown as configured, in every language.
    document.querySelectorAll('[data-i18n="page.title"]').forEach(function (node) {
      delete node.dataset.i18n;
      node.textContent = data.service_name;
    });
  }
  if (typeof data.welcome_text === "string" && data.welcome_text) {
    delete ui.welcome.dataset.i18n;
    ui.welcome.textContent = data.welcome_text;
  }
  if (typeof data.review_text === "string" && data.review_text) {
    delete ui.review.dataset.i18n;
    ui.review.textContent = data.review_text;
  }
  if (typeof data.logo_url === "string" && data.logo_url.charAt(0) === "/") {
    ui.logo.src = data.logo_url;
    ui.logo.hidden = false;     // decorative next to the name, which is the heading: alt=""
  }
  if (typeof data.emergency_number === "string" && /^[0-9+ ]{2,20}$/.test(data.emergency_number)) {
    setEmergencyNumber(data.emergency_number);
  }
  if (typeof data.phone_number === "string" && /^[0-9+ ()-]{2,24}$/.test(data.phone_number)) {
    app.site.phone_number = data.phone_number;     // offered when the queue is full
  }
  if (typeof data.max_message_chars === "number" && data.max_message_chars > 0) {
    app.site.max_message_chars = data.max_message_chars;
  }
  if (data.attachments && typeof data.attachments.max_bytes === "number" && Array.isArray(data.attachments.types)) {
    app.site.max_attachment_bytes = data.attachments.max_bytes;
    ui.attach.accept = data.attachments.types.join(",");
  }
  if (typeof data.quick_exit_url === "string" && /^https?:\/\//.test(data.quick_exit_url)) {
    app.site.quick_exit_url = data.quick_exit_url;
  }
  if (typeof data.privacy_url === "string" && /^(https?:\/\/|\/)/.test(data.privacy_url)) {
    ui.privacyLink.href = data.privacy_url;
  }
  app.site.require_consent = data.require_consent === true && typeof data.privacy_url === "string";
  // Proof of work before a chat starts: solved in the background (js/pow.js).
  app.site.proof_of_work = !!data.proof_of_work && data.proof_of_work.required === true;
  ui.consentField.hidden = !app.site.require_consent;

  const topics = Array.isArray(data.topics) ? data.topics.filter(function (t) {
    return t && typeof t.id === "string" && typeof t.label === "string";
  }) : [];
  app.site.topics = topics;
  if (topics.length) {
    const current = ui.topic.value;
    ui.topic.textContent = "";
    topics.forEach(function (t) {
      const option = make("option", "", t.label);
      option.value = t.id;
      ui.topic.appendChild(option);
    });
    const ids = topics.map(function (t) { return t.id; });
    ui.topic.value = ids.indexOf(current) !== -1 ? current : (ids.indexOf(wantedTopic) !== -1 ? wantedTopic : ids[0]);
  }
  topicChanged();
}

/** A topic nobody answers now (outside its hours: "open": false) offers the message form instead. */
export function topicChanged() {
  const topic = app.site.topics.find(function (t) { return t.id === ui.topic.value; });
  const closed = !!topic && topic.open === false;
  ui.chatFields.hidden = closed;
  ui.offlineForm.hidden = !closed;
  say(ui.offlineDone, "");
  say(ui.offlineError, "");
}

export function loadSite() {
  return apiRequest("/site").then(function (response) {
    return response.ok ? response.json() : null;
  }).then(applySite).catch(function () { /* keep the page's own text */ });
}

export function sendOfflineMessage(event) {
  event.preventDefault();
  const message = ui.offlineMessage.value.trim();
  if (!message) {
    say(ui.offlineError, "offline.empty");
    ui.offlineMessage.focus();
    return;
  }
  say(ui.offlineError, "");
  ui.offlineButton.disabled = true;
  const request = { topic: ui.topic.value, message: message };
  if (ui.offlineName.value.trim()) { request.name = ui.offlineName.value.trim(); }
  if (ui.offlineContact.value.trim()) { request.contact = ui.offlineContact.value.trim(); }
  apiRequest("/offline_messages", { method: "POST", json: request }).then(function (response) {
    return readJson(response).then(function (data) {
      if (!response.ok || data.ticket === undefined) { throw new Error(data.error || String(response.status)); }
      ui.offlineMessage.value = "";
      say(ui.offlineDone, "offline.sent", { ticket: String(data.ticket) });
      ui.offlineDone.focus();
    });
  }).catch(function (err) {
    // Kept in the form either way, so the citizen can send it again later.
    const key = err && err.message === "rate_limited" ? "offline.rate_limited" : "offline.failed";
    say(ui.offlineError, key, { number: app.site.emergency_number });
  }).then(function () { ui.offlineButton.disabled = false; });
}

/** Hide the chat at once: forget it in this tab and replace the page (the host page, in the widget). */
export function quickExit() {
  disconnect();
  forgetEverything();
  const url = app.site.quick_exit_url;
  if (app.embedded && window.parent !== window) {
    // The widget's script on the agency's page replaces that page; this frame goes blank meanwhile.
    window.parent.postMessage({ type: "precinct:quick-exit", url: url }, "*");
    document.body.textContent = "";
    return;
  }
  window.location.replace(url);
}

export function showDanger(on) {
  ui.danger.hidden = !on;
}

