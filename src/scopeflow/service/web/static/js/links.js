// Plain download links: a short-lived token for one job's results (POST
// /api/v1/web/jobs/{id}/download-token) makes /dl/<token>/<path> URLs that the browser streams
// to disk itself (nothing held in memory) and that napari / Fiji can open without a header.
import { post } from "./api.js";
import { enc } from "./util.js";

const MARGIN_MS = 60_000; // renew a token with less than a minute left
const cache = new Map(); // `${jobId}:${ttl}` -> { token, until }
const pending = new Map(); // `${jobId}:${ttl}` -> the promise of the token being asked for

export const isFresh = (held) => held.until - Date.now() > MARGIN_MS;

/**
 * A token for job `jobId`'s results, valid at least a minute more (renewed when needed).
 * Callers that come while a token is being asked for wait for that same request; a request
 * that fails is forgotten (the next caller asks again).
 */
export function linkToken(jobId, ttlS = 600) {
  const key = `${jobId}:${ttlS}`;
  const held = cache.get(key);
  if (held && isFresh(held)) return Promise.resolve(held);
  let asking = pending.get(key);
  if (!asking) {
    asking = post(`/web/jobs/${jobId}/download-token`, { ttl_s: ttlS }).then((r) => {
      // the local clock from now, not the server's `expires`: clocks may differ
      const fresh = { token: r.token, until: Date.now() + r.ttl_s * 1000 };
      cache.set(key, fresh);
      return fresh;
    }).finally(() => { if (pending.get(key) === asking) pending.delete(key); });
    pending.set(key, asking);
  }
  return asking;
}

/** The URL of a result file (or "results.zip") under a token. */
export const linkURL = (token, path, absolute = false) =>
  `${absolute ? location.origin : ""}/dl/${token}/${enc(path)}`;

/**
 * Make `a` a plain download link of job `jobId` from token `held`: `urlOf(token)` (default:
 * the result file `a.dataset.path`). A click on a link whose token is (nearly) spent gets a
 * fresh one first, then follows it.
 */
export function streamLink(a, jobId, held, urlOf = (token) => linkURL(token, a.dataset.path)) {
  let current = held;
  a.href = urlOf(current.token);
  a.addEventListener("click", (e) => {
    if (isFresh(current)) return; // the browser follows (and streams) the href
    e.preventDefault();
    linkToken(jobId).then((t) => {
      current = t;
      a.href = urlOf(t.token);
      a.click();
    });
  });
}

/** Start the download of job `jobId`'s results.zip through a plain link (one token request). */
export async function downloadZip(jobId) {
  const { token } = await linkToken(jobId);
  const a = document.createElement("a");
  a.href = linkURL(token, "results.zip");
  a.download = `${jobId}-results.zip`;
  document.body.append(a);
  a.click();
  a.remove();
}
