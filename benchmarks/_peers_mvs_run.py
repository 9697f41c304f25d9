"""Run inside multiview-stitcher's venv (see peers_spim.py): its fusion and marker registration.

Input: a JSON job file with the view TIFFs, voxel size, each view's pixel -> world affine
(x y z, 3 x 4), the output grid, bead point sets per pair and the worker count. Output: JSON
with timings and result paths. Only multiview-stitcher's public functions are called.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from multiview_stitcher import fusion, param_utils, registration
from multiview_stitcher import spatial_image_utils as siu


def mvs_affine(view_to_world, voxel_size):
    """Our pixel (x, y, z) -> world affine as its physical (z, y, x) -> world (z, y, x) one."""
    a = np.eye(4)
    a[:3, :] = np.asarray(view_to_world)
    a = a @ np.diag([1.0 / voxel_size[0], 1.0 / voxel_size[1], 1.0 / voxel_size[2], 1.0])
    p = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return p @ a @ p


def main(job_path):
    job = json.loads(Path(job_path).read_text())
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
    g = job["grid"]

    def run_fuse() -> np.ndarray:
        fused = fusion.fuse(
            sims,
            transform_key="registered",
            output_stack_properties={
                "spacing": {"z": g["spacing"], "y": g["spacing"], "x": g["spacing"]},
                "origin": {"z": g["origin"][2], "y": g["origin"][1], "x": g["origin"][0]},
                "shape": {"z": g["shape"][0], "y": g["shape"][1], "x": g["shape"][2]},
            },
            output_chunksize=128,
        )
        return np.asarray(fused.data.compute(scheduler="threads", num_workers=job["workers"]))

    run_fuse()  # warm-up, as scopeflow's fusion gets one
    t0 = time.perf_counter()
    arr = run_fuse()
    t_fuse = time.perf_counter() - t0
    np.save(job["fused_out"], arr.squeeze().astype(np.float32))
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
    print(
        json.dumps(
            {"fuse_s": t_fuse, "registration": regs}, default=lambda o: np.asarray(o).tolist()
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
