// The jobs table: polled every 2 s; filter by state; upload state (jobs still taking uploads)
// and a streamed zip download (finished jobs); start / cancel / restart / delete / open.
import { api, get, message } from "./api.js";
import { downloadZip } from "./links.js";
import { BEFORE_START, TERMINAL, el, every, stateBadge, toast, when } from "./util.js";

const UPLOADING = ["created", "uploading"];
const MAX_UPLOAD_LOOKUPS = 20; // GET /jobs/{id}/files per row: only for the newest few
// a row's files are asked for again when its job changed (state, updated_at), else every Nth
// refresh: a second upload declared or finished leaves the job "uploading" and unchanged
const UPLOAD_LOOKUP_EVERY = 5;

/** "2 files uploading", "3 input files" … from GET /jobs/{id}/files. */
function uploadText(files) {
  if (!files) return "";
  const n = files.uploads.length, done = files.files.length;
  const plural = (k, w) => `${k} ${w}${k === 1 ? "" : "s"}`;
  if (n) return `${plural(n, "file")} uploading${done ? `, ${done} done` : ""}`;
  return done ? `${plural(done, "input file")}` : "no files yet";
}

function uploadCell(job, files) {
  if (UPLOADING.includes(job.state)) return el("td.upload", { text: uploadText(files) });
  return el("td.upload.muted", { text: job.state === "ready" ? "uploaded" : "" });
}

function resultsCell(job) {
  if (!TERMINAL.includes(job.state)) return el("td.download");
  return el("td.download", {}, el("button.link", { type: "button", text: "zip", "aria-label": `Download the results of job ${job.name} (zip)`,
    onclick: () => downloadZip(job.id).catch((e) => toast(`Download failed: ${message(e)}`, true)) }));
}

export const STATES = ["created", "uploading", "ready", "queued", "running", "succeeded", "failed", "cancelled"];

/** The action buttons allowed in a job's state; `after` runs once an action went through. */
export function jobActions(job, after) {
  const s = job.state;
  const act = (label, method, path, cls = "") => el(`button${cls}`, {
    type: "button", text: label, "aria-label": `${label} job ${job.name}`,
    onclick: async () => {
      if (label === "Delete" && !confirm(`Delete job "${job.name}" and its files?`)) return;
      try { await api(method, path); toast(`${label}: ${job.name}`); after(label); }
      catch (e) { toast(`${label} failed: ${message(e)}`, true); }
    },
  });
  const id = job.id;
  return el("div.actions", {},
    BEFORE_START.includes(s) && act("Start", "POST", `/jobs/${id}/start`, ".primary"),
    !TERMINAL.includes(s) && act("Cancel", "POST", `/jobs/${id}/cancel`),
    ["failed", "cancelled", "succeeded"].includes(s) && act("Restart", "POST", `/jobs/${id}/restart`),
    !["queued", "running"].includes(s) && act("Delete", "DELETE", `/jobs/${id}`, ".danger"));
}

export function jobsView(main, query) {
  const filter = el("select#state-filter", { name: "state" },
    el("option", { value: "", text: "all states" }),
    STATES.map((s) => el("option", { value: s, text: s })));
  filter.value = query.get("state") || "";
  const body = el("tbody");
  const status = el("p.muted.small", { "aria-live": "polite" });
  main.append(
    el("div.row", {}, el("h1.grow", { text: "Jobs" }),
      el("label", { for: "state-filter", text: "State" }), filter,
      el("a.button.primary", { href: "#/new", text: "New job" })),
    el("div.table-wrap", {}, el("table#jobs", {},
      el("caption.muted.small", { text: "Your jobs, newest first (refreshes every 2 s)" }),
      el("thead", {}, el("tr", {}, ["Job", "Name", "Template", "State", "Created", "Started",
        "Finished", "Upload", "Results", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
      body)),
    status);
  let refresh, ticks = 0;
  let known = new Map(); // job id → { key, tick, files } of its last GET /jobs/{id}/files
  const draw = (jobs, uploads) => {
    body.replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id, "data-state": j.state },
      el("td", {}, el("a", { href: `#/job/${j.id}`, text: j.id.slice(0, 8), title: j.id })),
      el("td", { text: j.name }),
      el("td", { text: j.template }),
      el("td", {}, stateBadge(j.state)),
      el("td", { text: when(j.created_at) }),
      el("td", { text: when(j.started_at) }),
      el("td", { text: when(j.finished_at) }),
      uploadCell(j, uploads.get(j.id)),
      resultsCell(j),
      el("td", {}, el("div.row", {}, jobActions(j, () => refresh()),
        el("a.button", { href: `#/job/${j.id}`, text: "Open", "aria-label": `Open job ${j.name}` }))))));
    if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: 10, text: "No jobs yet." })));
  };
  refresh = async () => {
    const q = filter.value ? `?state=${filter.value}` : "";
    try {
      const jobs = await get(`/jobs${q}`);
      const tick = ++ticks;
      const lookups = jobs.filter((j) => UPLOADING.includes(j.state)).slice(0, MAX_UPLOAD_LOOKUPS);
      const now = new Map();
      await Promise.all(lookups.map(async (j) => {
        const key = `${j.state}:${j.updated_at}`, had = known.get(j.id);
        if (had && had.key === key && tick - had.tick < UPLOAD_LOOKUP_EVERY) { now.set(j.id, had); return; }
        const files = await get(`/jobs/${j.id}/files`).catch(() => null);
        if (files) now.set(j.id, { key, tick, files }); // a failed lookup is asked again next time
      }));
      known = now; // rows no longer shown are forgotten
      draw(jobs, new Map([...now].map(([id, k]) => [id, k.files])));
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) { status.textContent = message(e); }
  };
  filter.addEventListener("change", () => {
    history.replaceState(null, "", filter.value ? `#/jobs?state=${filter.value}` : "#/jobs");
    refresh();
  });
  return every(2000, refresh);
}
