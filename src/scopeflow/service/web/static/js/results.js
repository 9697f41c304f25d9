// Results: file list with downloads (fetched with the token, saved from a Blob), the zip, the
// summary's per-step times, PNG previews and snippets to open the outputs in napari or Fiji.
import { download, get, message, objectURL } from "./api.js";
import { bytes, el } from "./util.js";

const enc = (p) => p.split("/").map(encodeURIComponent).join("/");
const base = (p) => p.split("/").pop();

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

function snippets(files, url) {
  const zarr = [...new Set(files.map((f) => f.path.match(/^(.*?\.ome\.zarr|.*?\.zarr)\//)?.[1]).filter(Boolean))];
  const xml = files.filter((f) => f.path.endsWith(".xml")).map((f) => f.path);
  if (!zarr.length && !xml.length) return "";
  const out = [el("h3", { text: "Open in napari / Fiji" }),
    el("p.small.muted", { text: "Unzip the results first (the service does not serve OME-Zarr over HTTP yet)." })];
  for (const z of zarr) {
    out.push(el("pre.snippet", { text: `# napari (with napari-ome-zarr)\nimport napari\nviewer = napari.Viewer()\nviewer.open("${z}", plugin="napari-ome-zarr")\nnapari.run()` }));
  }
  for (const x of xml) {
    out.push(el("pre.snippet", { text: `// Fiji: Plugins › BigDataViewer › Open XML/HDF5, or in a Fiji script:\nrun("Open XML/HDF5", "browse=${x} type=[Image XML/HDF5 (BDV)]");` }));
  }
  out.push(el("p.small.muted", { text: `Job results: ${url}` }));
  return el("div#snippets", {}, out);
}

/** Fill `box` with the results of job `job`. */
export async function showResults(box, job) {
  let files;
  try { files = await get(`/jobs/${job.id}/results`); } catch (e) { box.replaceChildren(el("p.error", { text: message(e) })); return; }
  if (!files.length) { box.replaceChildren(el("p.muted", { text: "No results yet." })); return; }
  const total = files.reduce((s, f) => s + f.size, 0);
  const zipBtn = el("button.primary#download-zip", { type: "button", text: `Download all (zip, ${bytes(total)} before compression)`,
    onclick: () => download(`/jobs/${job.id}/results.zip`, `${job.id}-results.zip`).catch((e) => alert(message(e))) });
  const rows = files.map((f) => el("tr", {},
    el("td", { text: f.path }), el("td", { text: bytes(f.size) }),
    el("td", {}, el("button.link", { type: "button", text: "download", "aria-label": `Download ${f.path}`,
      onclick: () => download(`/jobs/${job.id}/results/${enc(f.path)}`, base(f.path)).catch((e) => alert(message(e))) }))));
  const pngs = files.filter((f) => f.path.toLowerCase().endsWith(".png"));
  const ordered = [...pngs.filter((f) => /^outputs\/(previews|qc)\//.test(f.path)), ...pngs.filter((f) => !/^outputs\/(previews|qc)\//.test(f.path))].slice(0, 24);
  const previews = el("div.previews#previews");
  for (const f of ordered) {
    const img = el("img", { alt: `preview ${f.path}`, loading: "lazy" });
    previews.append(el("figure", {}, img, el("figcaption", { text: f.path })));
    objectURL(`/jobs/${job.id}/results/${enc(f.path)}`).then((u) => { img.src = u; }).catch(() => { img.alt = `${f.path}: not loaded`; });
  }
  let summary = null;
  try { summary = await get(`/jobs/${job.id}/summary`); } catch { /* no summary yet */ }
  box.replaceChildren(
    el("p", {}, zipBtn),
    el("div.table-wrap", {}, el("table.files#results", {},
      el("thead", {}, el("tr", {}, ["File", "Size", ""].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))),
    el("h3", { text: "Previews" }),
    ordered.length ? previews : el("p.muted#no-previews", { text: "This job wrote no PNG previews." }),
    summary ? el("h3", { text: "Summary" }) : "", summary ? summaryTable(summary) : "",
    snippets(files, `${location.origin}/api/v1/jobs/${job.id}/results`));
}
