// Plain download links: a short-lived token for one job's results (POST
// /api/v1/web/jobs/{id}/download-token) makes /dl/<token>/<path> URLs that the browser streams
// to disk itself (nothing held in memory) and that napari / Fiji can open without a header.
import { message, post } from "./api.js";
import { enc, toast } from "./util.js";

const MARGIN_MS = 60_000; // renew a token with less than a minute left
const TTL_S = 600; // the lifetime of the links' tokens (the viewer snippets ask for longer ones)
const cache = new Map(); // `${jobId}:${ttl}` -> { token, until }
const pending = new Map(); // `${jobId}:${ttl}` -> the promise of the token being asked for

export const isFresh = (held) => held.until - Date.now() > MARGIN_MS;

/**
 * A token for job `jobId`'s results, valid at least a minute more (renewed when needed).
 * Callers that come while a token is being asked for wait for that same request; a request
 * that fails is forgotten (the next caller asks again). A renewed token of the links' lifetime
 * goes into every link of the job on the page at once (`data-link-job`, see `streamLink`).
 */
export function linkToken(jobId, ttlS = TTL_S) {
  const key = `${jobId}:${ttlS}`;
  const held = cache.get(key);
  if (held && isFresh(held)) return Promise.resolve(held);
  let asking = pending.get(key);
  if (!asking) {
    asking = post(`/web/jobs/${jobId}/download-token`, { ttl_s: ttlS }).then((r) => {
      // the local clock from now, not the server's `expires`: clocks may differ
      const fresh = { token: r.token, until: Date.now() + r.ttl_s * 1000 };
      cache.set(key, fresh);
      if (ttlS === TTL_S) renewLinks(jobId, fresh.token);
      return fresh;
    }).finally(() => { if (pending.get(key) === asking) pending.delete(key); });
    pending.set(key, asking);
  }
  return asking;
}

/** The links' token of job `jobId` when one is held and fresh, else null (no request). */
const heldToken = (jobId) => {
  const held = cache.get(`${jobId}:${TTL_S}`);
  return held && isFresh(held) ? held : null;
};

/** The URL of a result file (or "results.zip") under a token. */
export const linkURL = (token, path, absolute = false) =>
  `${absolute ? location.origin : ""}/dl/${token}/${enc(path)}`;

/** The URL of the zip of one folder of the results under a token (results.zip?prefix=…). */
export const folderZipURL = (token, folder) =>
  `${linkURL(token, "results.zip")}?prefix=${encodeURIComponent(folder)}`;

/** The URL of element `node` under `token`: the zip of folder `data-prefix`, or file `data-path`. */
const urlOf = (node, token) =>
  (node.dataset.prefix ? folderZipURL(token, node.dataset.prefix) : linkURL(token, node.dataset.path));

/**
 * Put `token` into the links of job `jobId` on the page: the `href` of a link, the `src` of an
 * image that has not loaded (a loaded one is kept: it is not fetched again).
 */
function renewLinks(jobId, token) {
  for (const node of document.querySelectorAll("[data-link-job]")) {
    if (node.dataset.linkJob !== jobId) continue;
    if (node instanceof HTMLImageElement) {
      if (!(node.complete && node.naturalWidth > 0)) node.src = urlOf(node, token);
    } else {
      node.href = urlOf(node, token);
    }
  }
}

/**
 * Make `a` a plain download link of job `jobId` from token `held`: the result file
 * `a.dataset.path` (or "results.zip"), or the zip of folder `a.dataset.prefix`. The link follows
 * a renewed token; a click on a link whose token is (nearly) spent gets a fresh one first,
 * then follows it.
 */
export function streamLink(a, jobId, held) {
  a.dataset.linkJob = jobId;
  a.href = urlOf(a, held.token);
  a.addEventListener("click", (e) => {
    const now = heldToken(jobId);
    if (now) { a.href = urlOf(a, now.token); return; } // the browser follows (and streams) it
    e.preventDefault();
    linkToken(jobId).then(() => a.click()) // the new token is in the href by now
      .catch((err) => toast(`Download failed: ${message(err)}`, true));
  });
}

/**
 * Make `img` a preview of result `img.dataset.path` of job `jobId` from token `held`. An image
 * that fails to load with a token that is no longer the one held (it was spent before a lazy
 * image came into view) is tried once more with the current token.
 */
export function previewImage(img, jobId, held) {
  const alt = img.alt;
  img.dataset.linkJob = jobId;
  img.src = urlOf(img, held.token);
  img.addEventListener("load", () => { img.alt = alt; }); // loaded after all, with a new token
  img.addEventListener("error", () => {
    const failed = img.src;
    linkToken(jobId).then((t) => {
      const url = urlOf(img, t.token);
      if (new URL(url, location.href).href === new URL(failed, location.href).href) {
        img.alt = `${img.dataset.path}: not loaded`; // the current token did not help either
      } else if (img.src === failed) {
        img.src = url;
      }
    }).catch(() => { img.alt = `${img.dataset.path}: not loaded`; });
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
