/* What the parts of the page share: the deployment's settings and the chat in this tab. */

export const app = {
  // GET /api/v1/site; the defaults hold until it answers.
  site: { emergency_number: "999", max_message_chars: 4000, quick_exit_url: "about:blank", topics: [],
          require_consent: false, proof_of_work: false },
  session: null,    // {chat_id, token, ws_url, number, state, lastSeq, frames: [], outbox: [], emergency}
  embedded: false   // inside the widget's iframe on an agency's site
};
