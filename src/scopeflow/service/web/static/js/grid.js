// The step × unit progress grid (colours per unit state) with overall progress and timings.
import { duration, el } from "./util.js";

export const UNIT_STATES = ["queued", "running", "done", "failed", "skipped"];

export function legend() {
  return el("p.legend", {}, UNIT_STATES.map((s) => el("span", {}, el(`i.cell.${s}`), s)));
}

/** Draw `progress` (GET /jobs/{id}/progress) into `box`; `onPick(step, unit)` on a cell. */
export function drawGrid(box, progress, selected, onPick) {
  let all = 0, finished = 0, failed = 0;
  const rows = progress.steps.map((s) => {
    const units = Object.entries(s.units);
    all += units.length;
    finished += (s.counts.done || 0) + (s.counts.skipped || 0);
    failed += s.counts.failed || 0;
    const counts = UNIT_STATES.filter((k) => s.counts[k]).map((k) => `${s.counts[k]} ${k}`).join(", ");
    return el("tr", { "data-step": s.step },
      el("th", { scope: "row", text: s.step }),
      el("td.small", { text: counts }),
      el("td.small", { text: duration(s.seconds) }),
      el("td", {}, el("div.cells", {}, units.map(([unit, state]) => {
        const sel = selected && selected.step === s.step && selected.unit === unit;
        return el(`button.cell.${state}${sel ? ".selected" : ""}`, {
          type: "button", title: `${s.step} / ${unit}: ${state}`, "aria-label": `${s.step} ${unit}: ${state}`,
          "aria-pressed": sel ? "true" : "false", "data-unit": unit, "data-state": state,
          onclick: () => onPick(s.step, unit),
        });
      }))));
  });
  const pct = all ? Math.round((100 * finished) / all) : 0;
  box.replaceChildren(
    el("p", {}, el("progress#overall", { max: all || 1, value: finished, "aria-label": "Overall progress" }),
      el("span.small#overall-text", { text: all
        ? ` ${finished} of ${all} units finished (${pct} %)${failed ? `, ${failed} failed` : ""} · run ${progress.run}`
        : " no units yet (the run has not started)" })),
    rows.length ? el("div.grid", {}, el("table#grid", {},
      el("thead", {}, el("tr", {}, ["Step", "Units", "Time (sum)", "Units (click for the log)"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows))) : "");
}
