"""Demo data of a template: synthetic inputs with known ground truth, instead of an upload.

An administrator may give a template a ``demo:`` entry (see ``templates.example.yaml``); a user
then asks ``POST /jobs/{id}/demo-data`` (the web wizard's *Use demo data*) and the service writes
the data into the job's input folder with :mod:`scopeflow.testing`'s generators — the same data
``scopeflow synth`` and ``scopeflow demo`` write. Only the generators named here can run, with
sizes the administrator chose; a user chooses nothing but the job's parameters, from which the
SPIM generator takes the number of views, time points, channels and illuminations and the voxel
size, so the data fit the job.

The data are made in a scratch folder inside the job's folder and moved into ``input/`` only
when complete, so a failure leaves no partial input (a scratch folder left by a process that
died is cleared by the next request); the synthetic ``config.yaml`` is left out
(the job's configuration comes from its template), the ground-truth files are kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from scopeflow.core.config import StrictModel
from scopeflow.core.errors import ConfigError
from scopeflow.service.files import regular_files

__all__ = ["DEMO_PIPELINES", "DemoData", "make_demo_data", "move_demo_data"]

#: The pipeline each generator makes data for.
DEMO_PIPELINES: dict[str, str] = {"cyto-ifc": "cyto", "cyto-confocal": "cyto", "spim": "spim"}


class DemoData(StrictModel):
    """A template's ``demo:`` entry: which synthetic data a job may use instead of an upload."""

    dataset: Literal["cyto-ifc", "cyto-confocal", "spim"] = Field(
        description="generator: 'cyto-ifc' (single-cell images, ifc/ch{c}.tif), 'cyto-confocal' "
        "(fields of touching cells) or 'spim' (multiview time-lapse with beads, "
        "tiff/t{t:03d}_v{v:02d}.tif)"
    )
    images: int = Field(
        200, ge=1, le=20000, description="cyto: number of images (ifc) or fields (confocal)"
    )
    shape: tuple[int, int, int] = Field(
        (64, 128, 128), description="spim: (z, y, x) voxels of each view, each 16 … 512"
    )
    seed: int = Field(0, ge=0, description="random seed: the same seed gives the same files")
    description: str = Field("", description="one line shown to users next to the option")

    @model_validator(mode="after")
    def _sizes(self) -> DemoData:
        if not all(16 <= s <= 512 for s in self.shape):
            raise ConfigError("demo", [("shape", f"each size 16 … 512, got {self.shape}")])
        return self


def make_demo_data(demo: DemoData, config: dict[str, Any], scratch: Path) -> list[tuple[str, int]]:
    """Write the demo data into ``scratch`` (made anew); their relative paths and sizes.

    Parameters
    ----------
    demo
        The template's entry.
    config
        The job's merged configuration (:meth:`Template.merged_config` of its parameters): the
        SPIM generator follows its ``angles``, ``ntimepoints``, ``channels``, ``illuminations``
        and ``voxel_size``.
    scratch
        A folder on the file system of the job's input folder; whatever it holds (a run that
        died) is removed first, and all of it on an error.

    Raises
    ------
    ConfigError
        The job's parameters do not allow the data (e.g. no ``angles``).
    """
    from scopeflow.testing import clear_scene_cache, make_cyto_dataset, make_spim_dataset

    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        if demo.dataset == "spim":
            make_spim_dataset(scratch, write_czi=False, seed=demo.seed, **_spim_args(demo, config))
            clear_scene_cache()  # the API process keeps no scene (up to ~120 MB each)
        else:
            kind = demo.dataset.removeprefix("cyto-")
            make_cyto_dataset(scratch, kind=kind, n=demo.images, seed=demo.seed)
        (scratch / "config.yaml").unlink(missing_ok=True)  # the template makes the job's config
        found = regular_files(scratch, skip_temp=False)
        return sorted((p.relative_to(scratch).as_posix(), st.st_size) for p, st in found)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def move_demo_data(scratch: Path, names: list[str], input_dir: Path) -> None:
    """Move the files ``names`` (from :func:`make_demo_data`) into ``input_dir``.

    Files of the same names are replaced; ``scratch`` is removed.
    """
    try:
        for rel in names:
            target = input_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _spim_args(demo: DemoData, config: dict[str, Any]) -> dict[str, Any]:
    """The SPIM generator's sizes from the job's configuration."""
    voxel = config.get("voxel_size") or {}
    try:
        return {
            "views": len(config["angles"]),
            "timepoints": int(config["ntimepoints"]),
            "channels": len(config.get("channels") or [0]),
            "illuminations": len(config.get("illuminations") or [0]),
            "shape": demo.shape,
            "voxel_size": tuple(
                float(voxel.get(a, d)) for a, d in zip("xyz", (1, 1, 2), strict=True)
            ),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            "demo data", [("angles/ntimepoints", f"the job's parameters do not allow them: {exc}")]
        ) from None
