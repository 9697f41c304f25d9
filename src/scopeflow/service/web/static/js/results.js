// Results: file list with downloads, the zip, the summary's per-step times, PNG previews and
// snippets to open the outputs in napari or Fiji. Downloads and previews are plain links under
// a short-lived download token (links.js): the browser streams them, nothing is held in memory.
// A Zarr folder (thousands of chunk files) is one row of the list, downloaded as its own zip.
import { get, message } from "./api.js";
import { linkToken, linkURL, previewImage, streamLink } from "./links.js";
import { bytes, el, when } from "./util.js";

const base = (p) => p.split("/").pop();
const VIEWER_TTL_S = 8 * 3600; // napari / Fiji read an OME-Zarr lazily: a working day
// the first path component that ends in .zarr, and the folders above it: "outputs/x.ome.zarr"
const ZARR_FOLDER = /^(.*?\.zarr)\//;

/** The rows of the file table: one per file, but one per Zarr folder (files, total size, zip). */
function fileRows(files, jobId, held) {
  const entries = []; // in the order of the listing: a file, or a Zarr folder at its first file
  const folders = new Map(); // folder -> { folder, n, size }
  for (const f of files) {
    const folder = f.path.match(ZARR_FOLDER)?.[1];
    if (!folder) { entries.push({ file: f }); continue; }
    let group = folders.get(folder);
    if (!group) { group = { folder, n: 0, size: 0 }; folders.set(folder, group); entries.push(group); }
    group.n += 1;
    group.size += f.size;
  }
  return entries.map((entry) => {
    if (entry.file) {
      const f = entry.file;
      const a = el("a.download", { "data-path": f.path, download: base(f.path), text: "download", "aria-label": `Download ${f.path}` });
      streamLink(a, jobId, held);
      return el("tr", {}, el("td", { text: f.path }), el("td", { text: bytes(f.size) }), el("td", {}, a));
    }
    const { folder, n, size } = entry;
    const a = el("a.download-folder", { "data-prefix": folder, download: `${jobId}-${base(folder)}.zip`, text: "zip",
      "aria-label": `Download ${folder} (zip)` });
    streamLink(a, jobId, held);
    return el("tr.zarr", { "data-folder": folder },
      el("td", {}, `${folder}/ `, el("span.small.muted", { text: `Zarr, ${n} file${n === 1 ? "" : "s"}` })),
      el("td", { text: bytes(size) }), el("td", {}, a));
  });
}

function summaryTable(summary) {
  const secs = (v) => (typeof v === "number" ? `${v.toFixed(2)} s` : "–");
  const rows = Object.entries(summary.steps || {}).map(([name, s]) => el("tr", {},
    el("td", { text: name }), el("td", { text: `${s.done ?? ""} / ${s.units ?? ""}` }),
    el("td", { text: s.failed ? String(s.failed) : "" }),
    el("td", { text: secs(s.mean_s) }), el("td", { text: secs(s.max_s) }), el("td", { text: secs(s.total_s) }),
    el("td", { text: s.peak_rss_mb ? `${Math.round(s.peak_rss_mb)} MiB` : "–" })));
  return el("div", {},
    el("p.small", { text: `Status ${summary.status ?? "?"} · wall time ${secs(summary.wall_s)} · run ${summary.run ?? ""}` }),
    el("div.table-wrap", {}, el("table#summary", {},
      el("thead", {}, el("tr", {}, ["Step", "Done / units", "Failed", "Mean", "Max", "Total", "Peak memory"]
        .map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))),
    el("details", {}, el("summary", { text: "summary.json" }),
      el("pre.snippet", { text: JSON.stringify(summary, null, 2) })));
}

function snippets(files, viewer) {
  const zarr = [...new Set(files.map((f) => f.path.match(ZARR_FOLDER)?.[1]).filter(Boolean))];
  const xml = files.filter((f) => f.path.endsWith(".xml")).map((f) => f.path);
  if (!zarr.length && !xml.length) return "";
  const out = [el("h3", { text: "Open in napari / Fiji" })];
  if (zarr.length && viewer) {
    out.push(el("p.small.muted", { text: `Over HTTP, no download needed; the link is valid until ${when(new Date(viewer.until).toISOString())} (reload this page for a new one).` }));
    for (const z of zarr) {
      const url = linkURL(viewer.token, z, true);
      out.push(el("pre.snippet.napari", { text: `# napari (with napari-ome-zarr)\nimport napari\nviewer = napari.Viewer()\nviewer.open("${url}", plugin="napari-ome-zarr")\nnapari.run()` }),
        el("pre.snippet.zarr-url", { text: `# any OME-Zarr reader that takes an HTTP URL (ome-zarr-py, Fiji's HDF5/N5/Zarr/OME-NGFF import …)\n${url}` }));
    }
  }
  for (const x of xml) {
    out.push(el("pre.snippet", { text: `// Fiji, on the downloaded and unzipped results: Plugins › BigDataViewer › Open XML/HDF5,\n// or in a Fiji script:\nrun("Open XML/HDF5", "browse=${x} type=[Image XML/HDF5 (BDV)]");` }));
  }
  return el("div#snippets", {}, out);
}

/** Fill `box` with the results of job `job`. */
export async function showResults(box, job) {
  let files;
  try { files = await get(`/jobs/${job.id}/results`); } catch (e) { box.replaceChildren(el("p.error", { text: message(e) })); return; }
  if (!files.length) { box.replaceChildren(el("p.muted", { text: "No results yet." })); return; }
  let held, viewer = null;
  try { held = await linkToken(job.id); } catch (e) { box.replaceChildren(el("p.error", { text: message(e) })); return; }
  const total = files.reduce((s, f) => s + f.size, 0);
  const zipLink = el("a.button.primary#download-zip", { "data-path": "results.zip", download: `${job.id}-results.zip`,
    text: `Download all (zip, ${bytes(total)} before compression)` });
  streamLink(zipLink, job.id, held);
  const rows = fileRows(files, job.id, held);
  const pngs = files.filter((f) => f.path.toLowerCase().endsWith(".png"));
  const ordered = [...pngs.filter((f) => /^outputs\/(previews|qc)\//.test(f.path)), ...pngs.filter((f) => !/^outputs\/(previews|qc)\//.test(f.path))].slice(0, 24);
  const previews = el("div.previews#previews");
  for (const f of ordered) {
    // the image and its link follow a renewed token (links.js), so neither breaks when it expires
    const img = el("img", { alt: `preview ${f.path}`, loading: "lazy", "data-path": f.path });
    previewImage(img, job.id, held);
    const a = el("a", { "data-path": f.path, target: "_blank", rel: "noopener" }, img);
    streamLink(a, job.id, held);
    previews.append(el("figure", {}, a, el("figcaption", { text: f.path })));
  }
  if (files.some((f) => ZARR_FOLDER.test(f.path))) {
    try { viewer = await linkToken(job.id, VIEWER_TTL_S); } catch { /* no snippet then */ }
  }
  let summary = null;
  try { summary = await get(`/jobs/${job.id}/summary`); } catch { /* no summary yet */ }
  box.replaceChildren(
    el("p", {}, zipLink),
    el("div.table-wrap", {}, el("table.files#results", {},
      el("thead", {}, el("tr", {}, ["File", "Size", ""].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))),
    el("h3", { text: "Previews" }),
    ordered.length ? previews : el("p.muted#no-previews", { text: "This job wrote no PNG previews." }),
    summary ? el("h3", { text: "Summary" }) : "", summary ? summaryTable(summary) : "",
    snippets(files, viewer));
}
