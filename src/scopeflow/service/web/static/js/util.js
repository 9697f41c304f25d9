// Small DOM and formatting helpers.

/** el("div.card#x", {attrs}, children…) */
export function el(spec, attrs = {}, ...children) {
  const [, tag = "div", rest = ""] = spec.match(/^([a-z0-9]*)(.*)$/i);
  const node = document.createElement(tag || "div");
  for (const m of rest.matchAll(/([.#])([\w-]+)/g)) {
    if (m[1] === ".") node.classList.add(m[2]);
    else node.id = m[2];
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Job states in groups, as the service's states.py has them. */
export const TERMINAL = ["succeeded", "failed", "cancelled"];
export const BEFORE_START = ["created", "uploading", "ready"];

/** A relative path for a URL: each component percent-encoded, the slashes kept. */
export const enc = (p) => p.split("/").map(encodeURIComponent).join("/");

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 10) return `${s.toFixed(2)} s`;
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function stateBadge(state) {
  return el(`span.state.${state}`, { text: state });
}

export function toast(text, bad = false) {
  const box = document.getElementById("toast");
  const t = el(bad ? "div.bad" : "div", { text });
  box.append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 3500);
}

/** setInterval that stops when the page's view changes (returns a stop function). */
export function every(ms, fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  let timer = setTimeout(tick, 0);
  return () => { stopped = true; clearTimeout(timer); };
}
