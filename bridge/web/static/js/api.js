/* The visitor API (docs/visitor-api.md) as the page speaks it: its paths, the chat's Bearer token, and
 * the same rules for every request (no cookies, nothing cached). Every module that talks to the server
 * goes through here; each keeps its own reading of the answer. */

const BASE = "/api/v1";

/** The path of one of the chat's resources: chatPath(session, "/close") → /api/v1/chats/{id}/close. */
export function chatPath(session, rest) {
  return BASE + "/chats/" + encodeURIComponent(session.chat_id) + (rest || "");
}

/** fetch() with the API's rules. options: method, json (sent as a JSON body), body, token (Bearer). */
export function request(path, options) {
  const o = options || {};
  const headers = {};
  let body = o.body;
  if (o.token) { headers["Authorization"] = "Bearer " + o.token; }
  if (o.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(o.json);
  }
  return fetch(path, {
    method: o.method || "GET", headers: headers, body: body, credentials: "omit", cache: "no-store"
  });
}

/** A request about the citizen's chat, with its token. */
export function chatRequest(session, rest, options) {
  return request(chatPath(session, rest), Object.assign({ token: session.token }, options));
}

/** A request to the API outside any chat: request("/site") → GET /api/v1/site. */
export function apiRequest(rest, options) {
  return request(BASE + rest, options);
}

/** The answer's JSON body, or {} when it has none (errors always carry {"error", "message"}). */
export function readJson(response) {
  return response.json().catch(function () { return {}; });
}
