/* The proof-of-work gate, page side (docs/visitor-api.md §5.1a). When GET /api/v1/site says
 * proof_of_work.required, a challenge (GET /api/v1/challenge) is solved in a Web Worker
 * (pow-worker.js) as soon as the page loads, so the answer is usually ready before the citizen
 * presses Start. A solution is used for one POST /api/v1/chats only, and a new one is fetched when
 * it would expire before it is used. Nothing to see or do for the citizen. */
import { app } from "./state.js";
import { apiRequest, readJson } from "./api.js";

const WORKER_URL = "/static/js/pow-worker.js";
const MAX_MARGIN_MS = 10000;      // a solution is not used this close to its expiry (at most a quarter of its life)

let worker = null;
let nextId = 0;
let pending = null;   // Promise of a solution being prepared
let ready = null;     // {challenge, answer, difficulty, hashes, validUntil}: solved, not yet used

export function required() { return app.site.proof_of_work === true; }

export function isReady() { return !!ready && ready.validUntil > Date.now(); }

function theWorker() {
  if (!worker) { worker = new Worker(WORKER_URL); }
  return worker;
}

function solveInWorker(challenge, difficulty) {
  return new Promise(function (resolve, reject) {
    const w = theWorker();
    nextId += 1;
    const id = nextId;
    function done() {
      w.removeEventListener("message", onMessage);
      w.removeEventListener("error", onError);
    }
    function onMessage(event) {
      const data = event.data || {};
      if (data.id !== id) { return; }
      done();
      if (typeof data.answer === "string") { resolve(data); } else { reject(new Error("pow_unsupported")); }
    }
    function onError() {
      done();
      worker = null;       // a broken worker is not used again
      reject(new Error("pow_unsupported"));
    }
    w.addEventListener("message", onMessage);
    w.addEventListener("error", onError);
    w.postMessage({ id: id, challenge: challenge, difficulty: difficulty });
  });
}

function fetchChallenge() {
  return apiRequest("/challenge").then(function (response) {
    return readJson(response).then(function (data) {
      if (!response.ok || typeof data.challenge !== "string" || !Number.isInteger(data.difficulty) ||
          typeof data.expires_in !== "number") {
        const problem = new Error(data.error || "challenge_failed");
        problem.status = response.status;
        throw problem;
      }
      return data;
    });
  });
}

/** Start solving now if there is no solution ready or on the way; a promise of that solution. */
export function prepare() {
  if (isReady()) { return Promise.resolve(ready); }
  if (!pending) {
    ready = null;
    const fetchedAt = Date.now();
    pending = fetchChallenge().then(function (c) {
      return solveInWorker(c.challenge, c.difficulty).then(function (found) {
        const lifeMs = c.expires_in * 1000;
        return { challenge: c.challenge, answer: found.answer, difficulty: c.difficulty, hashes: found.hashes,
                 validUntil: fetchedAt + lifeMs - Math.min(MAX_MARGIN_MS, lifeMs / 4) };
      });
    }).then(function (solution) {
      pending = null;
      ready = solution;
      return solution;
    }, function (err) {
      pending = null;
      throw err;
    });
  }
  return pending.then(function (solution) {
    // Solved too slowly to be used (or the tab slept): solve a fresh one.
    return solution.validUntil > Date.now() ? solution : prepare();
  });
}

/** A solution for one request; it is never handed out twice. */
export function take() {
  return prepare().then(function (solution) {
    if (ready === solution) { ready = null; }
    return solution;
  });
}

/** The next attempt will need a fresh solution (the server refused this one). */
export function forget() { ready = null; }
