/* Rendering the conversation: message frames (in seq order, each once), my own messages until the
 * server has them, edits, redactions, attachments. Bodies are text, never HTML. */
import { currentLanguage, onLanguageChange, setText } from "./i18n.js";
import { make } from "./dom.js";
import { ui } from "./dom.js";
import { app } from "./state.js";
import { request } from "./api.js";

const seen = new Set();          // every seq rendered or applied once
const bySeq = new Map();         // seq → <li> (for edits and redactions)
export const byClientId = new Map();    // client_id → <li> of my own messages

export function resetLog() {
  ui.log.textContent = "";
  seen.clear(); bySeq.clear(); byClientId.clear();
}

function nearBottom() {
  const box = ui.conversation;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

export function scrollToEnd() {
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

function clockTime(ts) {
  const d = new Date(typeof ts === "number" ? ts : Date.now());
  try {
    return d.toLocaleTimeString(currentLanguage(), { hour: "2-digit", minute: "2-digit" });
  } catch (e) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
}

// Times are written the citizen's way: again when the language changes.
onLanguageChange(function () {
  ui.log.querySelectorAll("time[datetime]").forEach(function (node) {
    node.textContent = clockTime(Date.parse(node.dateTime));
  });
});

// Confirmed messages go in seq order before my own not-yet-confirmed ones.
function insertConfirmed(li) {
  ui.log.insertBefore(li, ui.log.querySelector(".is-unconfirmed"));
}

function senderName(frame, from) {
  const node = make("span", "msg__sender");
  if (from === "visitor") { setText(node, "msg.you"); } else if (frame.sender) { node.textContent = frame.sender; } else {
    setText(node, "msg.officer");
  }
  return node;
}

function attachmentView(frame) {
  // The file needs the chat's token: fetch it, then offer it from memory (blob:), never by a URL
  // that carries the token.
  const box = make("div", "msg__file");
  const link = make("a", "msg__download");
  setText(link, "attach.download", { name: frame.attachment.name });
  link.download = frame.attachment.name;
  link.hidden = true;
  box.appendChild(link);
  if (!app.session) { return box; }
  request(frame.attachment.url, { token: app.session.token })
    .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.blob(); })
    .then(function (blob) {
      const url = URL.createObjectURL(blob);
      if (/^image\//.test(blob.type)) {
        const img = make("img", "msg__image");
        img.src = url;
        img.alt = frame.attachment.name;
        box.insertBefore(img, link);
      }
      link.href = url;
      link.hidden = false;
    })
    .catch(function () {
      const failed = make("span", "msg__state is-failed");
      setText(failed, "attach.unavailable");
      box.appendChild(failed);
    });
  return box;
}

export function messageItem(frame) {
  const from = frame.from === "officer" || frame.from === "visitor" ? frame.from : "system";
  const li = make("li", "msg msg--" + from);
  if (frame.kind === "notice") { li.classList.add("msg--notice"); }
  if (from !== "system") {
    const meta = make("div", "msg__meta");
    meta.appendChild(senderName(frame, from));
    const time = make("time", "", clockTime(frame.ts));
    if (typeof frame.ts === "number") { time.dateTime = new Date(frame.ts).toISOString(); }
    meta.appendChild(time);
    li.appendChild(meta);
  }
  const body = make("p", "msg__body");
  if (from === "system" && typeof frame.code === "string") {
    // A system line in the citizen's language; the English body if this page has no translation.
    const params = frame.params && typeof frame.params === "object" ? frame.params : {};
    setText(body, "notice." + frame.code, params, String(frame.body));
  } else {
    body.textContent = frame.kind === "emote" ? "* " + (frame.sender || "") + " " + frame.body : String(frame.body);
  }
  li.appendChild(body);
  if ((frame.kind === "image" || frame.kind === "file") && frame.attachment && typeof frame.attachment.url === "string") {
    li.classList.add("msg--attachment");
    li.appendChild(attachmentView(frame));
  }
  return li;
}

/** My own message's delivery state: a translation key (and params). */
export function setOwnState(li, key, params, failed) {
  let state = li.querySelector(":scope > .msg__state");
  if (!state) { state = make("span", "msg__state"); li.appendChild(state); }
  setText(state, key, params);
  state.classList.toggle("is-failed", !!failed);
}

/** A message frame from the server; hooks.delivered(client_id), officerSpoke() and emergency() let the rest follow. */
/** What an officer's client has read (a "read" frame, or the ready frame's read_seq): my messages up to
 * that seq say "Read" instead of "Delivered". */
export function markRead(seq) {
  const session = app.session;
  if (!session || typeof seq !== "number" || seq <= (session.readSeq || 0)) { return; }
  session.readSeq = seq;
  bySeq.forEach(function (li, s) {
    if (s <= seq && li.querySelector(":scope > .msg__state")) { setOwnState(li, "msg.read"); }
  });
}

function ownState(seq) {
  return seq <= (app.session.readSeq || 0) ? "msg.read" : "msg.delivered";
}

export function applyFrame(frame, hooks) {
  const session = app.session;
  if (typeof frame.seq !== "number" || seen.has(frame.seq)) { return; }
  seen.add(frame.seq);
  if (frame.seq > session.lastSeq) { session.lastSeq = frame.seq; }
  session.frames.push(frame);   // kept so a reload can render without asking again
  const stick = nearBottom();

  if (frame.kind === "edit" || frame.kind === "redaction") {
    const target = bySeq.get(frame.target);
    if (target) {
      const body = target.querySelector(".msg__body");
      const edited = target.querySelector(".msg__edited");
      delete body.dataset.i18n;
      if (frame.kind === "edit") {
        body.textContent = String(frame.body);
        if (!edited) {
          const mark = make("span", "msg__edited");
          setText(mark, "msg.edited");
          target.querySelector(".msg__meta").appendChild(mark);
        }
      } else {
        setText(body, "msg.removed");
        target.classList.add("msg--removed");
        if (edited) { edited.remove(); }
        const file = target.querySelector(".msg__file");
        if (file) { file.remove(); }
      }
    }
  } else {
    let li = frame.client_id ? byClientId.get(frame.client_id) : null;
    if (li) {
      // My own message, now in the conversation: keep its bubble, put it in its place.
      li.classList.remove("is-unconfirmed");
      setOwnState(li, ownState(frame.seq));
      if (frame.attachment && typeof frame.attachment.url === "string" && !li.querySelector(".msg__file")) {
        li.classList.add("msg--attachment");
        li.insertBefore(attachmentView(frame), li.querySelector(":scope > .msg__state"));
      }
      insertConfirmed(li);
      hooks.delivered(frame.client_id);
    } else {
      li = messageItem(frame);
      if (frame.from === "visitor") {
        setOwnState(li, ownState(frame.seq));
        if (frame.client_id) { byClientId.set(frame.client_id, li); hooks.delivered(frame.client_id); }
      }
      insertConfirmed(li);
    }
    li.dataset.seq = String(frame.seq);
    bySeq.set(frame.seq, li);
    if (frame.from === "officer") {
      if (frame.seq > (session.lastOfficerSeq || 0)) { session.lastOfficerSeq = frame.seq; }
      hooks.officerSpoke();
    }
    if (frame.from === "system" && frame.code === "emergency") { hooks.emergency(); }
  }
  if (stick || frame.from === "visitor") { scrollToEnd(); }
}

/** One of my messages the server does not have yet. */
export function pendingItem(item, stateKey) {
  const li = messageItem({ from: "visitor", kind: "text", body: item.body, ts: item.ts });
  li.classList.add("is-unconfirmed");
  byClientId.set(item.client_id, li);
  ui.log.appendChild(li);
  setOwnState(li, stateKey);
  return li;
}
