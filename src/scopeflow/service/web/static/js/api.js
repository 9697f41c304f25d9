// The REST API (/api/v1) with the bearer token kept in sessionStorage.
export const API = "/api/v1";
const KEY = "scopeflow.token";

export class APIError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (t) => (t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY));

/** fetch with the token; returns the Response (throws APIError unless ok). */
export async function raw(method, path, { body, headers = {}, signal } = {}) {
  const h = { ...headers };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(API + path, { method, headers: h, body: payload, signal });
  if (!r.ok) {
    let detail = r.statusText;
    try { const j = await r.json(); detail = j.detail ?? j; if (j.expected_offset !== undefined) detail = { ...j }; } catch { /* not JSON */ }
    if (r.status === 401 && path !== "/auth/login") {
      setToken(null);
      location.hash = "#/login";
    }
    throw new APIError(r.status, detail);
  }
  return r;
}

/** JSON of a request (null for 204). */
export async function api(method, path, body) {
  const r = await raw(method, path, { body });
  return r.status === 204 ? null : r.json();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

/** A message for any error (the API's detail, or the exception's). */
export function message(err) {
  if (err instanceof APIError) {
    const d = err.detail;
    if (Array.isArray(d)) return d.map((p) => `${(p.loc || []).join(".")}: ${p.msg}`).join("; ");
    if (d && typeof d === "object") return d.detail ? String(d.detail) : JSON.stringify(d);
    return `${d} (${err.status})`;
  }
  return String(err && err.message ? err.message : err);
}
