/* While waiting: the citizen's place in the queue and an honest estimate (a number only when the
 * bridge has one from real waits; "we don't know yet" otherwise). */
import { ui, say } from "./dom.js";
import { setText } from "./i18n.js";
import { app } from "./state.js";

/** Place in the queue and an honest estimate: a number only when the bridge has one. */
export function showQueue(frame) {
  if (frame.state !== "waiting" || typeof frame.position !== "number") { return; }
  const seconds = frame.estimate_seconds;
  let estimate;
  if (typeof seconds !== "number") {
    estimate = ["queue.estimate_unknown", {}];
  } else if (seconds < 60) {
    estimate = ["queue.estimate_soon", {}];
  } else {
    estimate = ["queue.estimate_minutes", { count: Math.round(seconds / 60) }];
  }
  app.session.queue = { position: frame.position, estimate: estimate };
  renderQueue();
}

export function renderQueue() {
  const q = app.session && app.session.queue;
  if (!q || app.session.state !== "waiting") { say(ui.queue, ""); return; }
  const node = ui.queue;
  node.textContent = "";
  node.hidden = false;
  const place = document.createElement("span");
  setText(place, "queue.position", { position: q.position });
  const wait = document.createElement("span");
  setText(wait, q.estimate[0], q.estimate[1]);
  node.append(place, " ", wait);
}

