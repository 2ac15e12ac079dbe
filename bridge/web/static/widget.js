/* Precinct chat widget for an agency's website:
 *
 *   <script src="https://chat.police.example/widget.js" defer></script>
 *   (optional: data-topic="lost-property" to open on a topic)
 *
 * Adds a "Chat with the police" button; it opens the chat page in an iframe (/chat?embed=1) from
 * the bridge's own origin, so the host page's CSS and scripts cannot touch the conversation. The
 * bridge only lets itself be framed by the sites in web.embed_origins. The launcher's words come
 * from the page's translation files (inserted by the bridge where WORDS is).
 */
(function () {
  "use strict";
  var WORDS = /*WORDS*/null;
  var PRIMARY = /*PRIMARY*/"#0b57a4";      // site.primary_color, checked for contrast with white text
  var script = document.currentScript;
  if (!script || !script.src || window.__precinctWidget) { return; }
  window.__precinctWidget = true;
  var origin = new URL(script.src).origin;
  var topic = script.getAttribute("data-topic");

  var language = "en";
  var wanted = (navigator.languages || [navigator.language || "en"]);
  for (var i = 0; i < wanted.length; i++) {
    var base = String(wanted[i]).toLowerCase().split("-")[0];
    if (WORDS && WORDS[base]) { language = base; break; }
  }
  var words = (WORDS && WORDS[language]) || { open: "Chat with the police", close: "Close", frame: "Police chat" };
  var rtl = language === "ar";

  // Every style is set !important on the element itself: a host page's own "!important" rules (say
  // "* { color: magenta !important }") would otherwise win over inline styles and could make the launcher
  // unreadable. CSSOM calls, so strict CSPs allow them.
  function set(node, property, value) {
    node.style.setProperty(property.replace(/[A-Z]/g, function (m) { return "-" + m.toLowerCase(); }), value,
                           "important");
  }

  function styled(tag, style) {
    var node = document.createElement(tag);
    Object.keys(style).forEach(function (k) { set(node, k, style[k]); });
    return node;
  }

  var side = rtl ? "left" : "right";
  var launcher = styled("button", {
    position: "fixed", bottom: "1rem", zIndex: "2147483646", padding: "0.75rem 1.1rem", minHeight: "44px",
    font: "600 1rem system-ui, sans-serif", color: "#fff", background: PRIMARY, border: "2px solid #fff",
    borderRadius: "999px", boxShadow: "0 2px 8px rgba(0,0,0,.35)", cursor: "pointer"
  });
  set(launcher, side, "1rem");
  launcher.type = "button";
  launcher.id = "precinct-launcher";
  launcher.textContent = words.open;
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "precinct-panel");

  var panel = styled("div", {
    position: "fixed", bottom: "4.5rem", zIndex: "2147483647", width: "min(26rem, calc(100vw - 1rem))",
    height: "min(40rem, calc(100vh - 6rem))", background: "#fff", border: "1px solid #8a94a3",
    borderRadius: "8px", boxShadow: "0 4px 16px rgba(0,0,0,.35)", display: "none", flexDirection: "column",
    overflow: "hidden"
  });
  set(panel, side, "0.5rem");
  panel.id = "precinct-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", words.frame);
  panel.dir = rtl ? "rtl" : "ltr";

  var close = styled("button", {
    alignSelf: rtl ? "flex-start" : "flex-end", margin: "0.25rem", padding: "0.4rem 0.75rem", minHeight: "44px",
    font: "600 0.95rem system-ui, sans-serif", color: PRIMARY, background: "#fff",
    border: "2px solid " + PRIMARY, borderRadius: "4px", cursor: "pointer"
  });
  close.type = "button";
  close.textContent = words.close;

  var frame = null;

  function open() {
    if (!frame) {
      frame = styled("iframe", { flex: "1 1 auto", width: "100%", border: "0" });
      frame.title = words.frame;
      frame.id = "precinct-frame";
      frame.src = origin + "/chat?embed=1" + (topic ? "&topic=" + encodeURIComponent(topic) : "");
      panel.appendChild(frame);
    }
    set(panel, "display", "flex");
    launcher.setAttribute("aria-expanded", "true");
    close.focus();
  }

  function hide() {
    set(panel, "display", "none");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.style.display === "none") { open(); } else { hide(); }
  });
  close.addEventListener("click", hide);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { hide(); }
  });

  // The chat's "Quick exit" inside the frame replaces this whole page with the neutral site.
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || !frame || event.source !== frame.contentWindow) { return; }
    var data = event.data;
    if (data && data.type === "precinct:quick-exit" && typeof data.url === "string" && /^https?:\/\//.test(data.url)) {
      panel.remove();
      launcher.remove();
      window.location.replace(data.url);
    }
  });

  panel.appendChild(close);
  function attach() { document.body.appendChild(panel); document.body.appendChild(launcher); }
  if (document.body) { attach(); } else { document.addEventListener("DOMContentLoaded", attach); }
})();
