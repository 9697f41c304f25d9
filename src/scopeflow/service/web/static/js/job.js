// One job: its state and actions, the upload panel (before it runs), the live step × unit grid,
// a unit's log followed while it runs, the scheduler's output, and the results.
import { get, message } from "./api.js";
import { drawGrid, legend } from "./grid.js";
import { jobActions } from "./jobs.js";
import { showResults } from "./results.js";
import { uploadPanel } from "./upload.js";
import { BEFORE_START, TERMINAL, duration, el, every, stateBadge, when } from "./util.js";


/**
 * A log box that follows GET /jobs/{id}/logs from the returned offset. One read at a time: a
 * poll asked for while one runs (a click and the page's refresh at once) waits for it and reads
 * on from its offset, so no text is read, and shown, twice.
 */
function follower(jobId, pre) {
  let query = null, offset = 0, placeholder = false;
  let running = null, next = null; // the read under way; the one read after it (shared)
  return {
    select(q) { query = q; offset = 0; pre.textContent = ""; placeholder = false; return this.poll(); },
    poll() {
      if (!running) {
        running = this.read().finally(() => { running = null; });
        return running;
      }
      next ??= running.catch(() => {}).then(() => { next = null; return this.poll(); });
      return next;
    },
    async read() {
      if (!query) return;
      const q = query;
      for (let i = 0; i < 20; i++) {
        const r = await get(`/jobs/${jobId}/logs?${new URLSearchParams({ ...q, offset })}`);
        if (q !== query) return; // another log was chosen meanwhile
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        if (r.text && placeholder) { pre.textContent = ""; placeholder = false; }
        if (r.text) pre.textContent += r.text;
        offset = r.offset;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
        if (r.offset >= r.size) break;
      }
      if (!pre.textContent) { pre.textContent = "(empty so far)"; placeholder = true; }
    },
  };
}

export async function jobView(main, id) {
  let job;
  try { job = await get(`/jobs/${id}`); } catch (e) { main.append(el("p.error", { text: message(e) })); return; }
  const head = el("div");
  const uploadBox = el("div");
  const gridBox = el("div#grid-box");
  const logTitle = el("h3#log-title", { text: "Unit log: click a cell of the grid" });
  const logPre = el("pre.log#unit-log", { tabindex: "0", role: "log", "aria-labelledby": "log-title" });
  const schedPick = el("select#sched-stream", {}, el("option", { value: "stderr", text: "stderr" }), el("option", { value: "stdout", text: "stdout" }));
  const schedPre = el("pre.log#sched-log", { tabindex: "0", role: "log", "aria-label": "Scheduler output" });
  const resultsBox = el("div#results-box");
  const unitLog = follower(id, logPre);
  const schedLog = follower(id, schedPre);
  let selected = null, shownResults = "", uploadShown = false;
  let settled = null;  // state key of a finished job whose grid, logs and results are all shown

  const pick = (step, unit) => {
    selected = { step, unit };
    settled = null;  // draw the grid once more with the new selection
    logTitle.textContent = `Unit log: ${step} / ${unit}`;
    unitLog.select({ step, unit }).catch((e) => { logPre.textContent = message(e); });
    refresh();
  };
  schedPick.addEventListener("change", () => schedLog.select({ stream: schedPick.value }));

  const drawHead = () => {
    const elapsed = job.started_at ? ((job.finished_at ? new Date(job.finished_at) : new Date()) - new Date(job.started_at)) / 1000 : null;
    head.replaceChildren(
      el("div.row", {}, el("h1.grow", {}, `Job ${job.name} `, stateBadge(job.state)),
        jobActions(job, (label) => { if (label === "Delete") location.hash = "#/jobs"; else refresh(); })),
      el("p.small.muted", {}, `${job.id} · template ${job.template} · created ${when(job.created_at)}`,
        job.started_at ? ` · started ${when(job.started_at)}` : "", job.finished_at ? ` · finished ${when(job.finished_at)}` : "",
        elapsed !== null ? ` · ${duration(elapsed)}` : "", job.attempts ? ` · attempt ${job.attempts}` : ""),
      job.error ? el("p.error", { text: job.error }) : "",
      Object.keys(job.params || {}).length ? el("p.small", { text: `Parameters: ${JSON.stringify(job.params)}` }) : "");
  };

  async function refresh() {
    job = await get(`/jobs/${id}`);
    drawHead();
    const key = `${job.state}:${job.finished_at}:${job.attempts}`;
    if (settled === key) return;  // finished and fully drawn: only watch for a restart
    const uploading = BEFORE_START.includes(job.state);
    if (uploading && !uploadShown) { uploadBox.replaceChildren(uploadPanel(id, refresh)); uploadShown = true; }
    if (!uploading && uploadShown) { uploadBox.replaceChildren(); uploadShown = false; }
    drawGrid(gridBox, await get(`/jobs/${id}/progress`), selected, pick);
    await unitLog.poll();
    await schedLog.poll();
    if (TERMINAL.includes(job.state) && shownResults !== key) { shownResults = key; await showResults(resultsBox, job); }
    if (TERMINAL.includes(job.state)) settled = key;  // the logs were read to their end above
  }

  main.append(head, uploadBox,
    el("section.card", { "aria-labelledby": "progress-title" }, el("h2#progress-title", { text: "Progress" }), legend(), gridBox),
    el("section.card", { "aria-labelledby": "log-title" }, logTitle, logPre),
    el("section.card", { "aria-labelledby": "sched-title" },
      el("div.row", {}, el("h3#sched-title.grow", { text: "Scheduler output" }), el("label", { for: "sched-stream", text: "Stream" }), schedPick),
      schedPre),
    el("section.card", { "aria-labelledby": "results-title" }, el("h2#results-title", { text: "Results" }), resultsBox));
  drawHead();
  schedLog.select({ stream: "stderr" }).catch(() => {});
  resultsBox.append(el("p.muted", { text: "Results appear when the job has finished." }));
  return every(1500, refresh);
}
