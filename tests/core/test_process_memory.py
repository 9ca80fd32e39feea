"""Lean MONAI import, glibc arena cap and heap trimming of headless processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import monai
import pytest

from napari_xrm_al.core.process_memory import (
    MONAI_OPTIONAL,
    import_monai_lean,
    limit_malloc_arenas,
    trim_heap,
)
from napari_xrm_al.core.synthetic.sample import make_hbm_sample, write_sample

HEAVY = ("pandas", "sklearn", "matplotlib", "skimage")


def _run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter with glibc's default allocator
    settings; it prints one JSON line last. (A dask cluster started by an
    earlier test leaves ``MALLOC_TRIM_THRESHOLD_`` in this process's
    environment, which fixes the mmap threshold of every child.)"""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_lean_import_skips_optional_packages_and_monai_still_works():
    out = _run_python(
        f"""
        import json, sys
        from napari_xrm_al.core.process_memory import import_monai_lean
        import_monai_lean()
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        import torch
        from monai.losses import ContrastiveLoss, DiceLoss, FocalLoss
        from monai.networks.nets import UNet
        net = UNet(2, 1, 3, (4, 8), (2,), num_res_units=1)
        y = net(torch.rand(2, 1, 16, 16))
        target = torch.randint(0, 3, (2, 1, 16, 16))
        dice = DiceLoss(to_onehot_y=True, softmax=True)(y, target)
        focal = FocalLoss(to_onehot_y=True)(y, target)
        import pandas  # later imports are not blocked
        print(json.dumps({{"loaded": loaded, "shape": list(y.shape),
                          "finite": bool(torch.isfinite(dice + focal))}}))
        """
    )
    assert out == {"loaded": [], "shape": [2, 3, 16, 16], "finite": True}


def test_lean_import_keeps_an_already_imported_monai():
    assert import_monai_lean() is monai
    assert not any(type(f).__name__ == "_Absent" for f in sys.meta_path)


def test_optional_set_names_only_packages_we_do_not_need_from_monai():
    assert {"torch", "numpy", "monai", "zarr"}.isdisjoint(MONAI_OPTIONAL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_arena_cap_and_trim_apply_on_glibc():
    assert limit_malloc_arenas(8) is True  # 8 per core-ish: harmless in the tests
    trim_heap()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("mapped", [False, True])
def test_large_blocks_freed_are_given_back_when_mapped(mapped):
    """Without the fixed threshold, glibc serves a 20 MiB block from the heap
    once one was freed (where freeing it keeps its pages); with it, from a
    memory map of its own (given back when freed). Counted by ``mallinfo2``."""
    out = _run_python(
        f"""
        import ctypes, json, numpy as np
        from napari_xrm_al.core.process_memory import map_large_allocations
        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        if not hasattr(libc, "mallinfo2"):  # glibc < 2.33
            print(json.dumps(None))
            raise SystemExit
        libc.mallinfo2.restype = Info
        applied = map_large_allocations() if {mapped} else False
        for _ in range(3):
            block = np.ones(20 * 2**20, np.uint8)
            mapped_mib = libc.mallinfo2().hblkhd / 2**20
            del block
        print(json.dumps({{"applied": applied, "mapped_mib": mapped_mib}}))
        """
    )
    if out is None:
        pytest.skip("needs glibc's mallinfo2")
    assert out["applied"] is mapped
    assert (out["mapped_mib"] >= 20) is mapped, out


def test_cli_pipeline_runs_in_a_lean_process(tmp_path):
    """pretrain → train → predict → rank → simulate as a user runs them."""
    paths = write_sample(tmp_path, make_hbm_sample(seed=0, shape=(12, 48, 48)))
    image, labels = str(paths["image"]), str(paths["labels"])
    fast = ["--threads", "1", "--quiet", "--steps", "2"]
    calls = [
        ["pretrain", "--image", image, "--out", str(tmp_path / "enc.pt"), *fast],
        [
            "train",
            *("--image", image, "--labels", labels, "--dense-labels"),
            *("--slices", "2,6", "--init", str(tmp_path / "enc.pt")),
            *("--out", str(tmp_path / "model.pt"), *fast),
        ],
        [
            "predict",
            *("--image", image, "--model", str(tmp_path / "model.pt")),
            *("--out", str(tmp_path / "pred.zarr"), "--threads", "1", "--quiet"),
        ],
        [
            "rank",
            *("--image", image, "--model", str(tmp_path / "model.pt")),
            *("--top", "2", "--threads", "1"),
        ],
    ]
    out = _run_python(
        f"""
        import json, sys
        from napari_xrm_al.cli import main
        status = [main(argv) for argv in {calls!r}]
        print(json.dumps({{"status": status,
                          "loaded": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
        """
    )
    assert out == {"status": [0, 0, 0, 0], "loaded": []}
    assert (tmp_path / "pred.zarr").is_dir()
