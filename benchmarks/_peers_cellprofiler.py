"""CellProfiler 4 headless on the IFC images: pipeline, parallel processes, feature count.

The pipeline (``ifc.cppipe``) is built with CellProfiler's own API in its venv (so its format is
whatever that version writes) and does the steps scopeflow does on the same images:
Metadata (``<id>_Ch<channel>.tif``) → NamesAndTypes (6 channels matched by id) →
IdentifyPrimaryObjects on the cytoplasm channel (global two-class Otsu, no declumping, holes
filled, nothing discarded: one cell per image) → MeasureObjectSizeShape (with Zernike and the
advanced moments) → MeasureObjectIntensity (6 channels) → MeasureTexture (6 channels, scales
3 and 5, 16 grey levels as scopeflow) → MeasureGranularity (6 channels, within cells, spectrum
16 as scopeflow) → ExportToSpreadsheet. CellProfiler has no per-channel masks inside a cell
(SCIP's and scopeflow's ``mask`` step); that part is not reproduced.

Run: one ``cellprofiler -c -r`` process per worker on disjoint image-set ranges (``-f``/``-l``),
as the peers README does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks._peers_proc import log_tail, run_measured, wait_quiet

BUILD = r"""
import sys
import cellprofiler_core.preferences as prefs
prefs.set_headless()
prefs.set_awt_headless(True)
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.modules.images import Images
from cellprofiler_core.modules.metadata import Metadata
from cellprofiler_core.modules.namesandtypes import NamesAndTypes
from cellprofiler_core.modules.groups import Groups
from cellprofiler.modules.identifyprimaryobjects import IdentifyPrimaryObjects
from cellprofiler.modules.measureobjectsizeshape import MeasureObjectSizeShape
from cellprofiler.modules.measureobjectintensity import MeasureObjectIntensity
from cellprofiler.modules.measuretexture import MeasureTexture
from cellprofiler.modules.measuregranularity import MeasureGranularity
from cellprofiler.modules.exporttospreadsheet import ExportToSpreadsheet

out, seg = sys.argv[1], sys.argv[2]
names = sys.argv[3].split(",")
p = Pipeline()
mods = []
im = Images()
# the default rule skips folders whose path has a hidden component (benchmarks/.data)
im.filter_choice.value = "Custom"
im.filter.value = 'and (extension does istif)'
mods.append(im)
md = Metadata()
md.wants_metadata.value = True
md.extraction_methods[0].extraction_method.value = "Extract from file/folder names"
md.extraction_methods[0].source.value = "File name"
md.extraction_methods[0].file_regexp.value = r"^(?P<id>[0-9]+)_Ch(?P<channel>[0-9])"
mods.append(md)
nt = NamesAndTypes()
nt.assignment_method.value = "Images matching rules"
for i, name in enumerate(names):
    if i:
        nt.add_assignment()
    a = nt.assignments[i]
    a.rule_filter.value = 'and (metadata does channel "%d")' % (i + 1)
    a.image_name.value = name
    a.load_as_choice.value = "Grayscale image"
nt.matching_choice.value = "Metadata"
nt.join.value = str([{n: "id" for n in names}])
mods.append(nt)
mods.append(Groups())
ip = IdentifyPrimaryObjects()
ip.x_name.value = seg
ip.y_name.value = "Cells"
ip.use_advanced.value = True
ip.size_range.value = (5, 90)
ip.exclude_size.value = False
ip.exclude_border_objects.value = False
ip.unclump_method.value = "None"
ip.fill_holes.value = "After both thresholding and declumping"
ip.threshold.threshold_scope.value = "Global"
ip.threshold.global_operation.value = "Otsu"
ip.threshold.two_class_otsu.value = "Two classes"
mods.append(ip)
ms = MeasureObjectSizeShape()
ms.objects_list.value = "Cells"
ms.calculate_zernikes.value = True
ms.calculate_advanced.value = True
mods.append(ms)
mi = MeasureObjectIntensity()
mi.images_list.value = ", ".join(names)
mi.objects_list.value = "Cells"
mods.append(mi)
mt = MeasureTexture()
mt.images_list.value = ", ".join(names)
mt.objects_list.value = "Cells"
mt.gray_levels.value = 16
mt.images_or_objects.value = "Objects"
mt.scale_groups[0].scale.value = 3
mt.add_scale()
mt.scale_groups[1].scale.value = 5
mods.append(mt)
mg = MeasureGranularity()
mg.images_list.value = ", ".join(names)
mg.wants_objects.value = True
mg.objects_list.value = "Cells"
mg.granular_spectrum_length.value = 16
mods.append(mg)
ex = ExportToSpreadsheet()
ex.wants_prefix.value = False
ex.wants_overwrite_without_warning.value = True
mods.append(ex)
for i, m in enumerate(mods):
    m.set_module_num(i + 1)
    p.add_module(m)
with open(out, "w") as fh:
    p.dump(fh)
print("ok")
"""


def _env(java_home: str) -> dict[str, str]:
    return {**os.environ, "JAVA_HOME": java_home, "OMP_NUM_THREADS": "1"}


def build_pipeline(venv: Path, java_home: str, out: Path, seg: str, names: list[str]) -> str:
    """Write ``out`` (.cppipe); returns '' or the error."""
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", BUILD, str(out), seg, ",".join(names)],
        capture_output=True,
        text=True,
        env=_env(java_home),
        timeout=600,
        check=False,
    )
    if proc.returncode != 0 or not out.exists():
        return "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
    return ""


def input_subset(folder: Path, n: int, channels: int) -> Path:
    """Hard links to the first ``n`` images' per-channel files (CellProfiler reads a folder)."""
    sub = folder / f"cp-{n}"
    if (sub / "DONE").exists():
        return sub
    shutil.rmtree(sub, ignore_errors=True)
    (sub / "images").mkdir(parents=True)
    for i in range(n):
        for c in range(1, channels + 1):
            os.link(folder / "scip" / f"{i}_Ch{c}.tif", sub / "images" / f"{i}_Ch{c}.tif")
    (sub / "DONE").write_text("ok\n")
    return sub


def count_features(out: Path) -> dict[str, Any]:
    """Columns of the per-object table (``Cells.csv``) by family."""
    csv = out / "Cells.csv"
    if not csv.exists():
        return {}
    header = csv.read_text().splitlines()[0].split(",")
    ids = {"ImageNumber", "ObjectNumber"}
    fams: dict[str, int] = {}
    for c in header:
        if c in ids:
            continue
        fam = c.split("_", 1)[0]
        fams[fam] = fams.get(fam, 0) + 1
    with csv.open() as fh:
        rows = sum(1 for _ in fh) - 1
    return {"objects": rows, "features_per_cell": sum(fams.values()), "families": fams}


_MODULE = re.compile(r"module (\w+) # \d+: CPU_time = ([0-9.]+) secs")


def module_cpu_ms(logs: list[Path], n: int) -> dict[str, float]:
    """CPU ms per image of each module, from CellProfiler's own per-module log lines."""
    sums: dict[str, float] = {}
    for log in logs:
        if not log.exists():
            continue
        for m in _MODULE.finditer(log.read_text(errors="replace")):
            sums[m.group(1)] = sums.get(m.group(1), 0.0) + float(m.group(2))
    return {k: round(v * 1e3 / max(n, 1), 1) for k, v in sums.items() if v > 0}


def run_cellprofiler_ifc(
    env_info: dict[str, Any],
    folder: Path,
    *,
    channels: list[str],
    n: int,
    workers: int,
    runs: Path,
    gate: dict[str, Any],
) -> dict[str, Any]:
    """CellProfiler on the first ``n`` IFC images, ``workers`` processes."""
    venv = Path(env_info["venv"])
    jh = env_info["java_home"]
    sub = input_subset(folder, n, len(channels))
    pipe = sub / "ifc.cppipe"
    if not pipe.exists():
        err = build_pipeline(venv, jh, pipe, "cytoplasm", channels)
        if err:
            return {"ok": False, "reason": ["could not build the .cppipe", *err.splitlines()]}
    out = runs / "cellprofiler-ifc"
    shutil.rmtree(out, ignore_errors=True)
    cp = venv / "bin" / "cellprofiler"
    bounds = [(n * w // workers + 1, n * (w + 1) // workers) for w in range(workers)]
    lines = []
    for w, (first, last) in enumerate(bounds):
        (out / f"w{w}").mkdir(parents=True)
        lines.append(
            f"'{cp}' -c -r -p '{pipe}' -i '{sub / 'images'}' -o '{out / f'w{w}'}' "
            f"-f {first} -l {last} > '{out / f'w{w}.log'}' 2>&1 &"
        )
    script = "\n".join([*lines, "wait"]) + "\n"
    quiet = wait_quiet(**gate)
    res = run_measured(
        ["bash", "-c", script], log=runs / "cellprofiler-ifc.log", env=_env(jh), timeout_s=3600
    )
    res["load_gate"] = quiet
    res["images"] = n
    res["pipeline"] = str(pipe)
    feats = [count_features(out / f"w{w}") for w in range(workers)]
    objects = sum(f.get("objects", 0) for f in feats)
    if not feats[0] or objects == 0:
        res["ok"] = False
        res["error"] = [
            "no objects exported",
            *log_tail(out / "w0.log", keys=("Error", "error", "Traceback")),
        ]
        return res
    res["ok"] = True
    res["images_per_s"] = round(n / res["wall_s"], 2)
    res["cpu_s_per_image"] = round(res["cpu_s"] / n, 4)
    res["features"] = {**feats[0], "objects": objects}
    res["module_cpu_ms_per_image"] = module_cpu_ms([out / f"w{w}.log" for w in range(workers)], n)
    return res
