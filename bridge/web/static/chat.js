/* Citizen chat page: speaks visitor API v1 (bridge/web/visitor_api.py).
 *
 * POST /api/v1/chats → {chat_id, token, ws_url, number}, kept in sessionStorage
 * so a reload or a lost connection resumes the same chat. WebSocket frames:
 *   out: auth {token, since}, message {client_id, body}, typing {active}, close
 *   in:  ready, message {seq, from, kind, sender, body, ts, target?, client_id?},
 *        status {state}, typing {active}, ack {client_id, seq}, error {error, message}
 * Everything from the network is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";

  var STORE_KEY = "precinct.chat.v1";
  var TYPING_IDLE_MS = 3000;          // typing {active:false} after this much quiet
  var OFFICER_TYPING_TIMEOUT_MS = 30000;
  var RETRY_MIN_MS = 1000;
  var RETRY_MAX_MS = 30000;
  // Errors the server sends in answer to a message frame (the frame has no client_id).
  var MESSAGE_ERRORS = ["message_too_long", "bad_request", "chat_closed", "invalid_json"];

  var STATE_TEXT = {
    waiting: "Waiting for an officer. You can already describe what it is about.",
    active: "An officer is with you.",
    closed: "This chat has ended."
  };

  function $(id) { return document.getElementById(id); }

  var ui = {
    start: $("start"), startForm: $("start-form"), topic: $("topic"), name: $("name"),
    startError: $("start-error"), startButton: $("start-button"),
    chat: $("chat"), number: $("chat-number"), state: $("chat-state"), connection: $("connection"),
    conversation: $("conversation"), log: $("log"), typing: $("typing"), chatError: $("chat-error"),
    composer: $("composer"), message: $("message"), send: $("send-button"), end: $("end-button"),
    endConfirm: $("end-confirm"), endConfirmText: $("end-confirm-text"), endYes: $("end-yes"), endNo: $("end-no"),
    ended: $("ended"), endedText: $("ended-text"), newChat: $("new-chat-button"),
    serviceName: $("service-name"), welcome: $("welcome")
  };

  // Deployment settings (GET /api/v1/site); the page's own text is the fallback until they arrive.
  var site = { emergency_number: "999", max_message_chars: 4000 };

  // ---- session (sessionStorage: this tab only, gone when it closes) ---------------------------

  var session = null;   // {chat_id, token, ws_url, number, state, lastSeq, frames: [], outbox: [{client_id, body, ts}]}

  function loadSession() {
    try {
      var raw = window.sessionStorage.getItem(STORE_KEY);
      if (!raw) { return null; }
      var s = JSON.parse(raw);
      if (!s || typeof s.chat_id !== "string" || typeof s.token !== "string") { return null; }
      s.frames = Array.isArray(s.frames) ? s.frames : [];
      s.outbox = Array.isArray(s.outbox) ? s.outbox : [];
      s.lastSeq = 0;   // recomputed from the frames actually rendered
      return s;
    } catch (e) {
      return null;
    }
  }

  function saveSession() {
    if (!session) { return; }
    try {
      window.sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
    } catch (e) {
      // Storage full or disabled: the chat still works, it just cannot be resumed after a reload.
    }
  }

  function clearSession() {
    try { window.sessionStorage.removeItem(STORE_KEY); } catch (e) { /* ignore */ }
    session = null;
  }

  function newClientId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ---- small helpers ---------------------------------------------------------------------------

  function show(node, text) {
    node.textContent = text;
    node.hidden = !text;
  }

  function clockTime(ts) {
    var d = new Date(typeof ts === "number" ? ts : Date.now());
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function nearBottom() {
    var box = ui.conversation;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function scrollToEnd() {
    ui.conversation.scrollTop = ui.conversation.scrollHeight;
  }

  // ---- topic from the URL (?topic=<id>) and the deployment's settings ---------------------------

  var wantedTopic = (function () {
    var wanted;
    try { wanted = new URLSearchParams(window.location.search).get("topic"); } catch (e) { wanted = null; }
    return wanted && wanted.length <= 64 ? wanted : null;
  })();

  (function topicFromUrl() {
    // Until the configured topics arrive (or if they never do), pass the URL's topic through as is.
    if (!wantedTopic) { return; }
    var label = wantedTopic.replace(/[-_]+/g, " ").trim();
    label = label.charAt(0).toUpperCase() + label.slice(1);
    var option = make("option", "", label);
    option.value = wantedTopic;
    ui.topic.appendChild(option);
    ui.topic.value = wantedTopic;
  })();

  function applySite(data) {
    if (!data || typeof data !== "object") { return; }
    if (typeof data.service_name === "string" && data.service_name) {
      ui.serviceName.textContent = data.service_name;
      document.title = data.service_name;
    }
    if (typeof data.welcome_text === "string") { show(ui.welcome, data.welcome_text); }
    if (typeof data.emergency_number === "string" && /^[0-9+ ]{2,20}$/.test(data.emergency_number)) {
      site.emergency_number = data.emergency_number;
      Array.prototype.forEach.call(document.querySelectorAll(".js-emergency"), function (a) {
        a.textContent = data.emergency_number;
        a.href = "tel:" + data.emergency_number.replace(/ /g, "");
      });
    }
    if (typeof data.max_message_chars === "number" && data.max_message_chars > 0) {
      site.max_message_chars = data.max_message_chars;
    }
    var topics = Array.isArray(data.topics) ? data.topics.filter(function (t) {
      return t && typeof t.id === "string" && typeof t.label === "string";
    }) : [];
    if (topics.length) {
      var current = ui.topic.value;
      ui.topic.textContent = "";
      topics.forEach(function (t) {
        var option = make("option", "", t.label);
        option.value = t.id;
        ui.topic.appendChild(option);
      });
      var ids = topics.map(function (t) { return t.id; });
      var pick = ids.indexOf(current) !== -1 ? current : (ids.indexOf(wantedTopic) !== -1 ? wantedTopic : ids[0]);
      ui.topic.value = pick;
    }
  }

  function loadSite() {
    fetch("/api/v1/site", { credentials: "omit", cache: "no-store" }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(applySite).catch(function () { /* keep the page's own text */ });
  }

  // ---- rendering the conversation --------------------------------------------------------------

  var seen = new Set();          // every seq rendered or applied once
  var bySeq = new Map();         // seq → <li> (for edits and redactions)
  var byClientId = new Map();    // client_id → <li> of my own messages

  function resetLog() {
    ui.log.textContent = "";
    seen.clear(); bySeq.clear(); byClientId.clear();
  }

  // Confirmed messages go in seq order before my own not-yet-confirmed ones.
  function insertConfirmed(li) {
    ui.log.insertBefore(li, ui.log.querySelector(".is-unconfirmed"));
  }

  function messageItem(frame) {
    var from = frame.from === "officer" || frame.from === "visitor" ? frame.from : "system";
    var li = make("li", "msg msg--" + from);
    if (frame.kind === "notice") { li.classList.add("msg--notice"); }
    if (from !== "system") {
      var meta = make("div", "msg__meta");
      meta.appendChild(make("span", "msg__sender", from === "visitor" ? "You" : (frame.sender || "Officer")));
      var time = make("time", "", clockTime(frame.ts));
      if (typeof frame.ts === "number") { time.dateTime = new Date(frame.ts).toISOString(); }
      meta.appendChild(time);
      li.appendChild(meta);
    }
    var body = frame.kind === "emote" ? "* " + (frame.sender || "Officer") + " " + frame.body : frame.body;
    li.appendChild(make("p", "msg__body", String(body)));
    return li;
  }

  function setOwnState(li, text, failed) {
    var state = li.querySelector(".msg__state");
    if (!state) { state = make("span", "msg__state"); li.appendChild(state); }
    state.textContent = text;
    state.classList.toggle("is-failed", !!failed);
  }

  function applyFrame(frame) {
    if (typeof frame.seq !== "number" || seen.has(frame.seq)) { return; }
    seen.add(frame.seq);
    if (frame.seq > session.lastSeq) { session.lastSeq = frame.seq; }
    session.frames.push(frame);   // kept so a reload can render without asking again
    var stick = nearBottom();

    if (frame.kind === "edit" || frame.kind === "redaction") {
      var target = bySeq.get(frame.target);
      if (target) {
        var body = target.querySelector(".msg__body");
        var edited = target.querySelector(".msg__edited");
        if (frame.kind === "edit") {
          body.textContent = String(frame.body);
          if (!edited) { target.querySelector(".msg__meta").appendChild(make("span", "msg__edited", "(edited)")); }
        } else {
          body.textContent = "message removed";
          target.classList.add("msg--removed");
          if (edited) { edited.remove(); }
        }
      }
    } else {
      var li = frame.client_id ? byClientId.get(frame.client_id) : null;
      if (li) {
        // My own message, now in the conversation: keep its bubble, put it in its place.
        li.classList.remove("is-unconfirmed");
        setOwnState(li, "Delivered");
        insertConfirmed(li);
        dropFromOutbox(frame.client_id);
      } else {
        li = messageItem(frame);
        if (frame.from === "visitor") {
          setOwnState(li, "Delivered");
          if (frame.client_id) { byClientId.set(frame.client_id, li); dropFromOutbox(frame.client_id); }
        }
        insertConfirmed(li);
      }
      li.dataset.seq = String(frame.seq);
      bySeq.set(frame.seq, li);
      if (frame.from === "officer") { showOfficerTyping(false); }
    }
    if (stick || frame.from === "visitor") { scrollToEnd(); }
  }

  function pendingItem(item) {
    var li = messageItem({ from: "visitor", kind: "text", body: item.body, ts: item.ts });
    li.classList.add("is-unconfirmed");
    byClientId.set(item.client_id, li);
    ui.log.appendChild(li);
    setOwnState(li, wsReady || navigator.onLine !== false ? "Sending…"
                                                           : "Not sent yet: it will be sent when you are back online");
    return li;
  }

  // ---- chat state --------------------------------------------------------------------------------

  function setState(state) {
    if (!STATE_TEXT[state]) { return; }
    session.state = state;
    saveSession();
    ui.state.textContent = STATE_TEXT[state];
    ui.state.classList.toggle("is-active", state === "active");
    var closed = state === "closed";
    var focusInComposer = ui.composer.contains(document.activeElement);
    ui.composer.hidden = closed;
    ui.ended.hidden = !closed;
    if (closed) {
      hideEndConfirm(false);
      // Keyboard and screen-reader users must not be left on a control that just vanished.
      if (focusInComposer) { ui.endedText.focus(); }
      stopTyping();
      showOfficerTyping(false);
      show(ui.connection, "");
      failOutbox("Not sent: the chat has ended.");
    }
  }

  function showChat() {
    ui.start.hidden = true;
    ui.chat.hidden = false;
    ui.number.textContent = session.number ? "(reference: Chat " + session.number + ")" : "";
    setState(session.state || "waiting");
  }

  // ---- outbox: my messages until the server acknowledges them ------------------------------------

  var inflight = [];   // client_ids sent on the current connection, in order, not yet acknowledged

  function dropFromOutbox(clientId) {
    session.outbox = session.outbox.filter(function (m) { return m.client_id !== clientId; });
    inflight = inflight.filter(function (id) { return id !== clientId; });
    saveSession();
  }

  function failOutbox(text) {
    session.outbox.forEach(function (m) {
      var li = byClientId.get(m.client_id);
      if (li) { setOwnState(li, text, true); li.classList.remove("is-unconfirmed"); }
    });
    session.outbox = [];
    inflight = [];
    saveSession();
  }

  function flushOutbox() {
    if (!wsReady) { return; }
    session.outbox.forEach(function (m) {
      if (inflight.indexOf(m.client_id) !== -1) { return; }
      if (sendFrame({ type: "message", client_id: m.client_id, body: m.body })) {
        inflight.push(m.client_id);
        var li = byClientId.get(m.client_id);
        if (li && li.classList.contains("is-unconfirmed")) { setOwnState(li, "Sending…"); }
      }
    });
  }

  function sendMessage() {
    var body = ui.message.value;
    if (!body.trim() || !session || session.state === "closed") { return; }
    var length = Array.from(body).length;   // code points, as the bridge counts
    if (length > site.max_message_chars) {
      show(ui.chatError, "Your message is " + length + " characters long; the limit is " + site.max_message_chars +
           ". Please split it into shorter messages.");
      ui.message.focus();
      return;
    }
    show(ui.chatError, "");
    var item = { client_id: newClientId(), body: body, ts: Date.now() };
    session.outbox.push(item);
    saveSession();
    pendingItem(item);
    scrollToEnd();
    ui.message.value = "";
    stopTyping();
    flushOutbox();
    ui.message.focus();
  }

  // ---- WebSocket with reconnect --------------------------------------------------------------------

  var ws = null;
  var wsReady = false;
  var retryDelay = RETRY_MIN_MS;
  var retryTimer = null;

  function socketUrl() {
    // The API's ws_url comes from the configured public URL; if the page was opened under another
    // host name (localhost vs 127.0.0.1), the CSP (connect-src 'self') only allows this page's host.
    var url = new URL(session.ws_url, window.location.href);
    if (url.host !== window.location.host) {
      url = new URL("/api/v1/chats/" + encodeURIComponent(session.chat_id) + "/ws", window.location.href);
      url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    }
    return url.toString();
  }

  function sendFrame(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { return false; }
    try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
  }

  function connect() {
    window.clearTimeout(retryTimer);
    retryTimer = null;
    if (!session || ws) { return; }
    var sock;
    try {
      sock = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.onopen = function () {
      sock.send(JSON.stringify({ type: "auth", token: session.token, since: session.lastSeq }));
    };
    sock.onmessage = function (event) {
      if (sock !== ws) { return; }
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame && typeof frame === "object") { handleFrame(frame); }
    };
    sock.onclose = function (event) {
      if (sock !== ws) { return; }
      socketGone();
      if (event.code === 4401 || event.code === 4404) {
        lostChat();
      } else if (session && session.state !== "closed") {
        scheduleReconnect();
      }
    };
    sock.onerror = function () { /* onclose follows */ };
  }

  function socketGone() {
    ws = null;
    wsReady = false;
    inflight = [];          // unacknowledged messages stay in the outbox and go again, same client_id
    showOfficerTyping(false);
    typingActive = false;
  }

  function scheduleReconnect() {
    if (retryTimer || !session) { return; }
    var delay = Math.min(retryDelay, RETRY_MAX_MS) * (0.8 + Math.random() * 0.4);
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
    var seconds = Math.max(1, Math.round(delay / 1000));
    show(ui.connection, navigator.onLine === false
      ? "You are offline. Messages you write now will be sent when you are back online."
      : "Connection lost. Trying again in " + seconds + (seconds === 1 ? " second" : " seconds") +
        "… Messages you write now will be sent when you are back.");
    retryTimer = window.setTimeout(function () { retryTimer = null; connect(); }, delay);
  }

  function reconnectNow() {
    if (!session || ws || session.state === "closed") { return; }
    window.clearTimeout(retryTimer);
    retryTimer = null;
    retryDelay = RETRY_MIN_MS;
    connect();
  }

  function wentOffline() {
    // The device says it has no network: the socket is as good as dead (a phone's TCP connection
    // can take minutes to time out). Drop it now, say so, and reconnect on "online".
    if (!session || session.state === "closed") { return; }
    if (ws) {
      var old = ws;
      socketGone();
      try { old.close(1000); } catch (e) { /* already closing */ }
    }
    byClientId.forEach(function (li) {
      if (li.classList.contains("is-unconfirmed")) {
        setOwnState(li, "Not sent yet: it will be sent when you are back online");
      }
    });
    window.clearTimeout(retryTimer);   // a retry already waiting: keep its pace, but say why now
    retryTimer = null;
    scheduleReconnect();
  }

  function lostChat() {
    // The token was refused: this chat cannot be resumed (e.g. it was removed).
    clearSession();
    resetLog();
    ui.chat.hidden = true;
    ui.start.hidden = false;
    show(ui.startError, "We could not resume your previous chat. Please start a new one.");
    ui.startButton.disabled = false;
  }

  function handleFrame(frame) {
    switch (frame.type) {
      case "ready":
        wsReady = true;
        retryDelay = RETRY_MIN_MS;
        show(ui.connection, "");
        if (typeof frame.number === "number") { session.number = frame.number; }
        setState(frame.state);
        flushOutbox();
        break;
      case "message":
        applyFrame(frame);
        saveSession();
        break;
      case "status":
        setState(frame.state);
        break;
      case "typing":
        showOfficerTyping(frame.active === true);
        break;
      case "ack":
        var li = byClientId.get(frame.client_id);
        if (li) { setOwnState(li, "Delivered"); }
        dropFromOutbox(frame.client_id);
        show(ui.chatError, "");
        break;
      case "error":
        handleError(frame);
        break;
      default:
        break;   // frames added in later API versions are ignored
    }
  }

  function handleError(frame) {
    var text = typeof frame.message === "string" && frame.message ? frame.message : "Something went wrong.";
    if (MESSAGE_ERRORS.indexOf(frame.error) !== -1 && inflight.length) {
      // The answer to the oldest message still waiting for its ack: it was not accepted.
      var clientId = inflight.shift();
      var li = byClientId.get(clientId);
      if (li) { setOwnState(li, "Not sent: " + text, true); li.classList.remove("is-unconfirmed"); }
      session.outbox = session.outbox.filter(function (m) { return m.client_id !== clientId; });
      saveSession();
    }
    if (frame.error === "chat_closed") {
      setState("closed");
      return;
    }
    if (frame.error === "unauthorized") { return; }   // the close code that follows says what to do
    show(ui.chatError, "Sorry, there was a problem: " + text);
  }

  // ---- typing ------------------------------------------------------------------------------------

  var typingActive = false;
  var typingTimer = null;
  var officerTypingTimer = null;

  function stopTyping() {
    window.clearTimeout(typingTimer);
    typingTimer = null;
    if (typingActive) {
      typingActive = false;
      sendFrame({ type: "typing", active: false });
    }
  }

  function onInput() {
    if (!wsReady || !session || session.state === "closed") { return; }
    if (!ui.message.value) { stopTyping(); return; }
    if (!typingActive && sendFrame({ type: "typing", active: true })) { typingActive = true; }
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function showOfficerTyping(active) {
    window.clearTimeout(officerTypingTimer);
    ui.typing.textContent = active ? "Officer is typing…" : "";
    if (active) {
      // If the "stopped typing" frame is lost, do not claim it forever.
      officerTypingTimer = window.setTimeout(function () { ui.typing.textContent = ""; }, OFFICER_TYPING_TIMEOUT_MS);
    }
  }

  // ---- starting and ending -----------------------------------------------------------------------

  function readJson(response) {
    return response.json().catch(function () { return {}; });
  }

  function startChat(event) {
    event.preventDefault();
    show(ui.startError, "");
    ui.startButton.disabled = true;
    ui.startButton.textContent = "Starting…";
    var request = {};
    if (ui.topic.value) { request.topic = ui.topic.value; }
    if (ui.name.value.trim()) { request.display_name = ui.name.value.trim(); }
    var language = (navigator.language || "").slice(0, 16);
    if (language) { request.language = language; }

    fetch("/api/v1/chats", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      return readJson(response).then(function (data) {
        if (!response.ok || typeof data.chat_id !== "string" || typeof data.token !== "string") {
          throw new Error(data.message || "The chat could not be started (error " + response.status + ").");
        }
        session = {
          chat_id: data.chat_id, token: data.token, ws_url: data.ws_url, number: data.number,
          state: "waiting", lastSeq: 0, frames: [], outbox: []
        };
        saveSession();
        resetLog();
        showChat();
        connect();
        ui.message.focus();
      });
    }).catch(function (err) {
      var text = err instanceof TypeError
        ? "We could not reach the chat service. Please check your connection and try again."
        : err.message;
      show(ui.startError, text + " In an emergency call " + site.emergency_number + ".");
    }).then(function () {
      ui.startButton.disabled = false;
      ui.startButton.textContent = "Start chat";
    });
  }

  function askToEnd() {
    if (!session || session.state === "closed") { return; }
    ui.endConfirm.hidden = false;
    ui.end.setAttribute("aria-expanded", "true");
    ui.endConfirmText.focus();
  }

  function hideEndConfirm(refocus) {
    if (ui.endConfirm.hidden) { return; }
    ui.endConfirm.hidden = true;
    ui.end.setAttribute("aria-expanded", "false");
    if (refocus) { ui.end.focus(); }
  }

  function endChat() {
    if (!session || session.state === "closed") { return; }
    // The question stays (and keeps the focus) until the "closed" status moves it to the ended text.
    stopTyping();
    if (sendFrame({ type: "close" })) { return; }   // the status frame that follows updates the page
    fetch("/api/v1/chats/" + encodeURIComponent(session.chat_id) + "/close", {
      method: "POST",
      headers: { "Authorization": "Bearer " + session.token },
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      setState("closed");
    }).catch(function () {
      show(ui.chatError, "Sorry, the chat could not be ended because you seem to be offline. Please try again.");
    });
  }

  function newChat() {
    hideEndConfirm(false);
    if (ws) { var old = ws; ws = null; old.close(1000); }
    wsReady = false;
    window.clearTimeout(retryTimer);
    retryTimer = null;
    clearSession();
    resetLog();
    show(ui.chatError, "");
    ui.chat.hidden = true;
    ui.start.hidden = false;
    ui.topic.focus();
  }

  // ---- wiring ------------------------------------------------------------------------------------

  ui.startForm.addEventListener("submit", startChat);
  ui.composer.addEventListener("submit", function (event) { event.preventDefault(); sendMessage(); });
  ui.message.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  ui.message.addEventListener("input", onInput);
  ui.end.addEventListener("click", askToEnd);
  ui.endYes.addEventListener("click", endChat);
  ui.endNo.addEventListener("click", function () { hideEndConfirm(true); });
  ui.endConfirm.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); hideEndConfirm(true); }
  });
  ui.newChat.addEventListener("click", newChat);
  window.addEventListener("online", reconnectNow);
  window.addEventListener("offline", wentOffline);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { reconnectNow(); }
  });

  loadSite();

  // Resume a chat from this tab (after a reload): render what we had, then ask for what is new.
  session = loadSession();
  if (session) {
    var cached = session.frames;
    session.frames = [];
    resetLog();
    cached.forEach(function (frame) {
      if (frame && typeof frame === "object") { applyFrame(frame); }
    });
    session.outbox.forEach(function (item) {
      if (!byClientId.has(item.client_id)) { pendingItem(item); }
    });
    showChat();
    scrollToEnd();
    connect();
  }
})();
