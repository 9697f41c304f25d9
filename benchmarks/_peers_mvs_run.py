"""Run inside multiview-stitcher's venv (see peers_spim.py): one operation of the comparison.

Input: a JSON job file: ``part`` (``registration``, ``fusion``, ``content`` or
``deconvolution``), the view TIFFs, voxel size, each view's pixel -> world affine (x y z,
3 x 4), the output grid, the worker count and what the part needs (bead point sets per pair,
sigmas, ``.npy`` inputs, output paths). Output: one JSON line with timings; volumes are written
to the ``.npy`` paths the job names. Only multiview-stitcher's public functions are called:

* ``registration.registration_marker_based(fixed_zyx, moving_zyx, transform_type,
  ransac_num_iterations)``;
* ``fusion.fuse(sims, transform_key, fusion_func, weights_func, weights_func_kwargs,
  output_stack_properties, output_chunksize)`` with the default ``weighted_average_fusion`` and,
  for content-based fusion, ``weights_func=weights.content_based`` (``sigma_1``, ``sigma_2``:
  Gaussian sigmas in output-grid pixels, applied to the views resampled on the grid);
* ``fusion.multi_view_deconvolution(transformed_views, blending_weights, psfs, psf_type,
  n_iterations, lambda_reg, min_value)`` on views already on the grid (NaN = no data).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from multiview_stitcher import fusion, param_utils, registration, weights
from multiview_stitcher import spatial_image_utils as siu


def mvs_affine(view_to_world, voxel_size):
    """Our pixel (x, y, z) -> world affine as its physical (z, y, x) -> world (z, y, x) one."""
    a = np.eye(4)
    a[:3, :] = np.asarray(view_to_world)
    a = a @ np.diag([1.0 / voxel_size[0], 1.0 / voxel_size[1], 1.0 / voxel_size[2], 1.0])
    p = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return p @ a @ p


def load_sims(job):
    """The views as its SpatialImages, with our registered affines under ``registered``."""
    vs = job["voxel_size"]
    sims = []
    for path, model in zip(job["views"], job["view_to_world"], strict=True):
        vol = tifffile.imread(path)
        sim = siu.get_sim_from_array(
            vol,
            dims=["z", "y", "x"],
            scale={"z": vs[2], "y": vs[1], "x": vs[0]},
            translation={"z": 0.0, "y": 0.0, "x": 0.0},
            transform_key="affine_metadata",
        )
        siu.set_sim_affine(sim, param_utils.affine_to_xaffine(mvs_affine(model, vs)), "registered")
        sims.append(sim)
    return sims


def run_fuse(sims, job, **kwargs):
    """``fusion.fuse`` onto the job's grid, computed with Dask threads and the job's workers."""
    g = job["grid"]
    fused = fusion.fuse(
        sims,
        transform_key="registered",
        output_stack_properties={
            "spacing": {"z": g["spacing"], "y": g["spacing"], "x": g["spacing"]},
            "origin": {"z": g["origin"][2], "y": g["origin"][1], "x": g["origin"][0]},
            "shape": {"z": g["shape"][0], "y": g["shape"][1], "x": g["shape"][2]},
        },
        output_chunksize=job.get("chunksize", 128),
        **kwargs,
    )
    arr = fused.data.compute(scheduler="threads", num_workers=job["workers"])
    return np.asarray(arr).squeeze().astype(np.float32)


def part_fusion(job):
    sims = load_sims(job)
    run_fuse(sims, job)  # warm-up, as scopeflow's fusion gets one
    t0 = time.perf_counter()
    arr = run_fuse(sims, job)
    t = time.perf_counter() - t0
    np.save(job["fused_out"], arr)
    return {"fuse_s": t}


def _int_if_integral(x):
    return int(x) if float(x).is_integer() else float(x)


def part_content(job):
    sims = load_sims(job)
    # its required chunk overlap is ``2 * sigma_2`` used as a pixel count: a float sigma_2
    # (even 11.0) makes fuse fail (TypeError in np.zeros), so integral sigmas are passed as int
    kwargs = {k: _int_if_integral(job[k]) for k in ("sigma_1", "sigma_2")}
    # warm-up: the plain weighted average (same resampling and blending code; a content-based
    # warm-up would double the cost of the expensive part)
    np.save(job["plain_out"], run_fuse(sims, job))
    t0 = time.perf_counter()
    arr = run_fuse(
        sims,
        job,
        fusion_func=fusion.weighted_average_fusion,
        weights_func=weights.content_based,
        weights_func_kwargs=kwargs,
    )
    t = time.perf_counter() - t0
    np.save(job["fused_out"], arr)
    return {"fuse_s": t, "overlap_px": weights.content_based.required_overlap(kwargs)}


def part_registration(job):
    regs = {}
    for key, (fixed, moving) in job["pairs"].items():
        t0 = time.perf_counter()
        try:
            m = registration.registration_marker_based(
                np.asarray(fixed)[:, ::-1],
                np.asarray(moving)[:, ::-1],
                transform_type="affine",
                ransac_num_iterations=job["ransac_iterations"],
            )
            s = time.perf_counter() - t0
            mat = np.asarray(m["affine_matrix"], dtype=float)  # 0.1.62 returns a dict
            regs[key] = {"s": s, "affine_zyx": mat.tolist()}
        except Exception as exc:
            regs[key] = {"s": time.perf_counter() - t0, "error": f"{type(exc).__name__}: {exc}"}
    return {"registration": regs}


def part_deconvolution(job):
    views = np.load(job["views_npy"])  # (n, z, y, x) float32, NaN where a view has no data
    blend = np.load(job["weights_npy"])  # (n, z, y, x), summing to 1 over views (or 0)
    psfs = list(np.load(job["psfs_npy"]))
    kwargs = {
        "psfs": psfs,
        "psf_type": job["psf_type"],
        "lambda_reg": job["lambda"],
        "min_value": job["min_value"],
    }
    # n_iterations=0: compound kernels + initial estimate only (its setup); it doubles as the
    # warm-up (direct convolution has no plans to warm)
    t0 = time.perf_counter()
    fusion.multi_view_deconvolution(views, blend, n_iterations=0, **kwargs)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = fusion.multi_view_deconvolution(views, blend, n_iterations=job["iterations"], **kwargs)
    total = time.perf_counter() - t0
    np.save(job["deconvolved_out"], np.asarray(out, dtype=np.float32))
    return {"setup_s": setup, "total_s": total}


PARTS = {
    "registration": part_registration,
    "fusion": part_fusion,
    "content": part_content,
    "deconvolution": part_deconvolution,
}


def main(job_path):
    job = json.loads(Path(job_path).read_text())
    got = PARTS[job["part"]](job)
    print(json.dumps(got, default=lambda o: np.asarray(o).tolist()))


if __name__ == "__main__":
    main(sys.argv[1])
