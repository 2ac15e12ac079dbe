/* The proof-of-work solver, in a Web Worker so the page never stalls (docs/visitor-api.md §5.1a).
 *
 * in:  {id, challenge, difficulty}
 * out: {id, answer, hashes}: SHA-256(challenge + ":" + answer) starts with `difficulty` zero bits;
 *      or {id, error} when this browser cannot do it (no SubtleCrypto, e.g. a page not served over https).
 *
 * Digests are asked for in batches: SubtleCrypto answers each with a promise, and keeping a batch
 * in flight hides most of that round trip. Answers are decimal numbers counted up from 0.
 */
"use strict";

const BATCH = 512;
const MAX_BITS = 32;                 // the bridge never asks for more (proof_of_work.max_bits)
const encoder = new TextEncoder();

function startsWithZeroBits(bytes, bits) {
  let i = 0;
  for (; bits >= 8; bits -= 8, i += 1) {
    if (bytes[i] !== 0) { return false; }
  }
  return bits === 0 || (bytes[i] >> (8 - bits)) === 0;
}

async function solve(challenge, bits) {
  if (!self.crypto || !self.crypto.subtle) { throw new Error("SubtleCrypto is not available"); }
  const prefix = challenge + ":";
  for (let n = 0; n < Number.MAX_SAFE_INTEGER; n += BATCH) {
    const batch = [];
    for (let k = 0; k < BATCH; k += 1) {
      batch.push(self.crypto.subtle.digest("SHA-256", encoder.encode(prefix + String(n + k))));
    }
    const digests = await Promise.all(batch);
    for (let k = 0; k < BATCH; k += 1) {
      if (startsWithZeroBits(new Uint8Array(digests[k]), bits)) {
        return { answer: String(n + k), hashes: n + k + 1 };
      }
    }
  }
  throw new Error("no answer found");
}

self.onmessage = function (event) {
  const task = event.data || {};
  const id = task.id;
  if (typeof task.challenge !== "string" || !Number.isInteger(task.difficulty) || task.difficulty < 0 ||
      task.difficulty > MAX_BITS) {
    self.postMessage({ id: id, error: "not a challenge" });
    return;
  }
  solve(task.challenge, task.difficulty).then(function (found) {
    self.postMessage({ id: id, answer: found.answer, hashes: found.hashes });
  }, function (err) {
    self.postMessage({ id: id, error: String((err && err.message) || err) });
  });
};
