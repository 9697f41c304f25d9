// Upload files and folders into a job's input: file/folder pickers and drag and drop; each file
// hashed in the browser (incremental SHA-256, so any size), declared, sent in 8 MiB chunks from
// the offset the service holds (resume after a reload: pick the same files again), finished.
// "Cancel upload" stops the batch: the file being sent is discarded on the service (DELETE
// …/files/{path}); files already finished stay, the ones not begun are left out.
// The job's finished input files are listed with their sizes, each with a "Remove" button
// (asks first, then DELETE …/files/{path}: the file goes, and the job's state follows).
import { get, message, raw } from "./api.js";
import { sha256File } from "./sha256.js";
import { bytes, duration, el, enc, toast } from "./util.js";

const CHUNK = 8 * 2 ** 20;
const hashKey = (f) => `scopeflow.sha256:${f.name}:${f.size}:${f.lastModified}`;

/** Files (with their relative paths) of a drop: folders are walked recursively. */
async function dropped(dataTransfer) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, path: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  };
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (entries.length) for (const e of entries) await walk(e, "");
  else for (const f of dataTransfer.files) out.push({ file: f, path: f.name });
  return out;
}

/** The upload panel of job `jobId`; `onDone()` after a batch finished. */
export function uploadPanel(jobId, onDone) {
  const fileInput = el("input#pick-files", { type: "file", multiple: true });
  const dirInput = el("input#pick-folder", { type: "file", multiple: true });
  dirInput.webkitdirectory = true;
  const prefix = el("input#upload-prefix", { type: "text", placeholder: "(top of the input folder)", size: 24 });
  const zone = el("div.drop#drop-zone", { tabindex: "0", role: "button",
    "aria-label": "Drop files or folders here, or press Enter to pick files" },
  "Drop files or folders here");
  const list = el("tbody");
  const total = el("progress#upload-total", { max: 1, value: 0, "aria-label": "Total upload progress" });
  const totalText = el("p.small#upload-stats", { "aria-live": "polite" });
  const pending = el("div#pending-uploads");
  const cancelBtn = el("button#cancel-upload", { type: "button", text: "Cancel upload", hidden: true,
    onclick: () => { if (controller) { controller.abort(); cancelBtn.disabled = true; } } });
  let controller = null;
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    run(await dropped(e.dataTransfer));
  });
  const picked = (input) => () => {
    run([...input.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name })));
    input.value = "";
  };
  fileInput.addEventListener("change", picked(fileInput));
  dirInput.addEventListener("change", picked(dirInput));

  async function showPending() {
    try {
      const r = await get(`/jobs/${jobId}/files`);
      pending.replaceChildren(
        r.uploads.length ? el("p.small", {}, el("strong", { text: "Unfinished uploads: " }),
          r.uploads.map((u) => `${u.path} (${bytes(u.received ?? u.offset ?? 0)} of ${bytes(u.size)})`).join(", "),
          " — pick the same files again to resume.") : "",
        r.files.length ? el("div#input-files", {}, el("p.small", {}, el("strong", { text: "Input files" })),
          el("ul.small.input-files", {}, r.files.map((f) => el("li", { "data-path": f.path }, `${f.path} (${bytes(f.size)}) `,
            el("button.danger", { type: "button", text: "Remove", "aria-label": `Remove ${f.path}`,
              onclick: (e) => remove(f, e.currentTarget) })))))
          : el("p.small.muted#input-files", { text: "No input files yet." }));
    } catch (e) { pending.textContent = message(e); }
  }

  /** Delete a finished input file (after a confirm), then list the files and the job again. */
  async function remove(f, button) {
    if (!confirm(`Remove ${f.path} (${bytes(f.size)}) from the job's input?`)) return;
    button.disabled = true;
    try {
      const r = await (await raw("DELETE", `/jobs/${jobId}/files/${enc(f.path)}`)).json();
      // an unfinished upload of the same name goes first: the file itself stays until asked again
      toast(r.discarded ? `Unfinished upload of ${f.path} discarded; the finished file stays` : `Removed ${f.path}`);
      const row = [...list.rows].find((tr) => tr.dataset.path === f.path);
      if (row && r.deleted) row.lastElementChild.replaceChildren(el("span.small", { text: "removed" }));
    } catch (e) { toast(`${f.path} not removed: ${message(e)}`, true); }
    await showPending();
    onDone && onDone();
  }

  let busy = false;
  async function run(items) {
    if (!items.length || busy) return;
    busy = true;
    controller = new AbortController();
    const { signal } = controller;
    cancelBtn.hidden = false;
    cancelBtn.disabled = false;
    const base = prefix.value.trim().replace(/^\/+|\/+$/g, "");
    const jobs = items.map(({ file, path }) => {
      const bar = el("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${path}` });
      const note = el("span.small", { text: "waiting" });
      const full = base ? `${base}/${path}` : path;
      list.append(el("tr", { "data-path": full }, el("td", { text: full }), el("td", { text: bytes(file.size) }), el("td", {}, bar, note)));
      return { file, path: full, bar, note, done: 0 };
    });
    const size = jobs.reduce((s, j) => s + j.file.size, 0) || 1;
    total.max = size;
    const t0 = performance.now();
    let sent = 0;
    const stats = () => {
      const done = jobs.reduce((s, j) => s + j.done, 0);
      total.value = done;
      const rate = sent / Math.max((performance.now() - t0) / 1000, 0.001);
      totalText.textContent = `${bytes(done)} of ${bytes(size)} · ${bytes(rate)}/s · ${
        done >= size ? "done" : `about ${duration((size - done) / Math.max(rate, 1))} left`}`;
    };
    let failed = 0, cancelled = 0;
    for (const j of jobs) {
      if (signal.aborted) { cancelled++; j.note.textContent = "cancelled"; continue; }
      try { await one(j, (n) => { sent += n; stats(); }, signal); }
      catch (e) {
        if (signal.aborted) { cancelled++; j.note.textContent = "cancelled"; await discard(j); continue; }
        failed++; j.note.textContent = `failed: ${message(e)}`; j.note.className = "error";
      }
      stats();
    }
    totalText.textContent += cancelled ? ` · upload cancelled (${cancelled} not uploaded)`
      : failed ? ` · ${failed} failed` : " · all files uploaded";
    busy = false;
    controller = null;
    cancelBtn.hidden = true;
    await showPending();
    onDone && onDone();
  }

  /** Discard what the service holds of a cancelled file (nothing to do if it was not declared). */
  async function discard(j) {
    if (!j.declared) return;
    j.bar.value = 0; j.done = 0;
    try { await raw("DELETE", `/jobs/${jobId}/files/${enc(j.path)}`); }
    catch (e) { if (e.status !== 404) j.note.textContent = `cancelled (not discarded: ${message(e)})`; }
  }

  async function one(j, onSent, signal) {
    const { file, path } = j;
    const call = async (method, url, body) => (await raw(method, url, { body, signal })).json();
    let sha = localStorage.getItem(hashKey(file));
    if (!sha) {
      let hashed = 0;
      sha = await sha256File(file, (n) => {
        signal.throwIfAborted();
        hashed += n; j.note.textContent = `hashing ${Math.round((100 * hashed) / (file.size || 1))} %`;
      });
      try { localStorage.setItem(hashKey(file), sha); } catch { /* storage full: hash again next time */ }
    }
    signal.throwIfAborted();
    j.declared = true;
    let { offset } = await call("POST", `/jobs/${jobId}/files`, { path, size: file.size, sha256: sha });
    if (offset) j.note.textContent = `resuming at ${bytes(offset)}`;
    j.done = offset; j.bar.value = offset;
    while (offset < file.size) {
      const chunk = file.slice(offset, offset + CHUNK);
      try {
        const r = await call("PUT", `/jobs/${jobId}/files/${enc(path)}?offset=${offset}`, chunk);
        onSent(r.offset - offset);
        offset = r.offset;
      } catch (e) {
        if (e.status === 409 && e.detail && e.detail.expected_offset !== undefined) offset = e.detail.expected_offset;
        else throw e;
      }
      j.done = offset; j.bar.value = offset;
      j.note.textContent = `${Math.round((100 * offset) / (file.size || 1))} %`;
    }
    await call("POST", `/jobs/${jobId}/files/${enc(path)}/finish`);
    j.done = file.size; j.bar.value = file.size || 1;
    j.note.textContent = "done ✓";
  }

  showPending();
  return el("section.card#upload", { "aria-labelledby": "upload-title" },
    el("h2#upload-title", { text: "Upload input files" }),
    el("div.row", {},
      el("label", { for: "pick-files", text: "Files" }), fileInput,
      el("label", { for: "pick-folder", text: "Folder" }), dirInput),
    el("div.field", {}, el("label", { for: "upload-prefix", text: "Into folder " }), prefix,
      el("span.help", { text: "Folders keep their own name (e.g. images/…); the example template reads images/*.tif." })),
    zone,
    el("div.table-wrap", {}, el("table.files", {}, el("thead", {}, el("tr", {},
      ["File", "Size", "Progress"].map((h) => el("th", { scope: "col", text: h })))), list)),
    el("div.row", {}, el("div.grow", {}, total), cancelBtn), totalText, pending);
}
