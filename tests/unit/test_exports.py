"""The public names of each package are exactly what we intend, and all resolve."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPECTED = {
    "scopeflow.core": {
        "AlreadyExistsError",
        "BadPathError",
        "ClusterError",
        "ClusterKind",
        "ConfigError",
        "FormatError",
        "InputNotFoundError",
        "InvalidTransitionError",
        "PipelineError",
        "RunDirError",
        "RunFailedError",
        "RunStatus",
        "ScopeflowError",
        "UnitState",
        "UnknownNameError",
        "atomic_write_bytes",
        "atomic_write_json",
        "atomic_write_text",
    },
    "scopeflow.engine": {
        "DEFAULT_RETRIES",
        "ONCE",
        "ClusterSpec",
        "Dependency",
        "EventLog",
        "Node",
        "Pipeline",
        "ProgressSink",
        "RichProgress",
        "RunDir",
        "RunOutcome",
        "Step",
        "UnitContext",
        "UnitError",
        "all_units",
        "backend_for",
        "iter_events",
        "load_summary",
        "per_unit",
        "read_events",
        "run_pipeline",
        "start_mpi_cluster",
    },
    "scopeflow.pipelines": {"available", "get_pipeline"},
    "scopeflow.ops.cyto": {
        "DEFAULT_TEXTURE_LEVELS",
        "FAMILIES",
        "LabelMatch",
        "QuantileState",
        "channel_masks",
        "channel_quantiles",
        "combined_mask",
        "compute_masks",
        "feature_columns",
        "finalize_quantiles",
        "iou_matrix",
        "match_labels",
        "measure_objects",
        "merge_quantile_states",
        "normalize",
        "normalize_per_image",
        "segment_cellpose",
        "segment_field",
        "segment_fields",
        "segment_single_cell",
        "validate_labels",
    },
    "scopeflow.io": {
        "AXES_ORDER",
        "AttributeValue",
        "BdvReader",
        "CziReader",
        "ImageMetadata",
        "ImageReader",
        "OmeTiffReader",
        "OmeZarrReader",
        "Partition",
        "PartitionInfo",
        "Pyramid",
        "SpimData",
        "TiffReader",
        "ViewSetup",
        "ViewTransform",
        "ZarrReader",
        "cells_path",
        "create_ome_zarr",
        "export_anndata",
        "export_csv",
        "export_fcs",
        "merge_spimdata",
        "merge_table_parts",
        "open_image",
        "partition_filename",
        "propose_mipmaps",
        "pyramid_steps",
        "read_spimdata",
        "read_arrow_table",
        "read_table",
        "read_tiff",
        "read_tiff_planes",
        "reader_class",
        "reader_formats",
        "register_reader",
        "tiff_stack_shape",
        "write_bdv_master",
        "write_bdv_partition",
        "write_ome_zarr",
        "write_ome_zarr_region",
        "write_spimdata",
        "write_table_part",
    },
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_testing_exports_resolve() -> None:
    mod = importlib.import_module("scopeflow.testing")
    assert {"make_spim_dataset", "make_cyto_dataset", "SpimTruth", "CytoTruth"} <= set(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_error_tree() -> None:
    from scopeflow import core

    for name in (
        "ConfigError",
        "FormatError",
        "InputNotFoundError",
        "UnknownNameError",
        "PipelineError",
        "RunDirError",
        "ClusterError",
        "RunFailedError",
        "InvalidTransitionError",
        "AlreadyExistsError",
        "BadPathError",
    ):
        assert issubclass(getattr(core, name), core.ScopeflowError)
    assert issubclass(core.InputNotFoundError, FileNotFoundError)
    assert issubclass(core.ConfigError, ValueError)
    assert issubclass(core.UnknownNameError, KeyError)
    assert issubclass(core.InvalidTransitionError, ValueError)
    assert issubclass(core.AlreadyExistsError, ValueError)
    assert issubclass(core.BadPathError, ValueError)


def test_errors_survive_pickling() -> None:
    # errors raised on Dask workers travel to the driver pickled
    import pickle
    from pathlib import Path

    from scopeflow import core
    from scopeflow.engine import UnitError

    errors = [
        core.ConfigError("c.yaml", [("a.b", "expected a number")]),
        core.InputNotFoundError(Path("/x/y.tif"), "image"),
        core.FormatError(Path("/x/y.czi"), "truncated at byte 12"),
        core.UnknownNameError("pipeline", "nope", ["a", "b"]),
        core.RunDirError(Path("/run"), problem="locked"),
        core.RunFailedError([("s", "u", "boom")]),
        core.PipelineError("cycle"),
        core.InvalidTransitionError("running", "ready", job_id="ab12", reason="changed"),
        core.AlreadyExistsError("user", "alice"),
        UnitError("s[u]", "ValueError: x", "tb"),
    ]
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err)
        assert str(clone) == str(err)
        assert clone.__dict__.keys() >= {k for k in err.__dict__ if k != "_init_args"}


def test_lazy_io_names_match_its_all() -> None:
    """``scopeflow.io`` loads names lazily from ``_WHERE``; its literal ``__all__`` must agree."""
    from scopeflow import io

    assert sorted(io.__all__) == sorted(io._WHERE)
    for name in io.__all__:
        assert getattr(io, name) is not None


def test_the_command_line_starts_without_the_http_and_web_stacks() -> None:
    """`scopeflow run …` must not pay for httpx, FastAPI or SQLAlchemy at start-up."""
    import subprocess
    import sys

    code = (
        "import sys, scopeflow.cli, scopeflow.client; "
        "print(sorted(m for m in ('httpx', 'fastapi', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from scopeflow import client

    assert client.Client.__name__ == "Client"  # still there, loaded on first use


def test_the_service_reads_run_directories_without_the_engine(tmp_path: Path) -> None:
    """The API and its worker read run directories by the names of ``core.runlayout``:
    loading them, listing a run's results and reading a failed run's summary must not import
    the engine package, which imports Dask (0.2 s)."""
    import json
    import subprocess
    import sys

    run = tmp_path / "job" / "run"
    (run / "outputs").mkdir(parents=True)
    (run / "outputs" / "a.txt").write_text("a")
    failed = [{"step": "fuse", "unit": "t0", "error": "boom"}]
    (run / "summary.json").write_text(json.dumps({"failed": failed}))
    code = f"""
import sys
from pathlib import Path
import scopeflow.service.app, scopeflow.service.worker
from scopeflow.service._worker_status import _failed_units
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.transfers import list_results
files = JobFiles(Path({str(tmp_path / "job")!r}))
assert [r["path"] for r in list_results(files.run_dir)] == ["outputs/a.txt", "summary.json"]
assert "fuse[t0]: boom" in _failed_units(files, None)
print(sorted(m for m in ("scopeflow.engine", "dask", "distributed") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
