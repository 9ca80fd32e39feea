"""Ranking caches (``cache/summary-*.npz``, ``cache/embedding-*.npz``): a
damaged cache file is treated as absent, recomputed, overwritten and warned
about once; it never stops a ranking."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest

from napari_xrm_al.core.al.ranking import first_ranking, summarise
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.model.checkpoint import save_checkpoint
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.pretrain import pretrain

SHAPE = (8, 32, 32)


def flip_last_data_byte(data: bytes) -> bytes:
    """One bit of the last array's bytes flipped (the zip CRC no longer matches)."""
    central = data.rfind(b"PK\x01\x02")  # the zip directory follows the data
    out = bytearray(data)
    out[central - 1] ^= 0x01
    return bytes(out)


def npz_of(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


#: Ways a cache file gets damaged: its bytes -> the damaged bytes.
DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "cut at the end": lambda data: data[:-10],
    "empty": lambda data: b"",
    "not an npz": lambda data: b"this is not a cache file\n",
    "one bit flipped": flip_last_data_byte,
    "an array missing": lambda data: npz_of(index=np.arange(3)),
    "pickled objects": lambda data: npz_of(index=np.array([{"a": 1}], dtype=object)),
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return make_hbm_sample(seed=0, shape=SHAPE).image


def damaged_cache_is_recomputed(
    caplog, cache_dir: Path, pattern: str, damage, rank
) -> None:
    """``rank()`` twice around damaging the one cache file: same result, the
    file rewritten readable, one warning naming it."""
    first = rank()
    (cache,) = cache_dir.glob(pattern)
    cache.write_bytes(damage(cache.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="napari_xrm_al"):
        again = rank()
    np.testing.assert_array_equal(again, first)
    warned = [r.getMessage() for r in caplog.records if str(cache) in r.getMessage()]
    assert len(warned) == 1 and "recomputed" in warned[0], caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="napari_xrm_al"):
        np.testing.assert_array_equal(rank(), first)  # read back from the cache
    assert caplog.records == []


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_summary_cache(
    tmp_path, caplog, image, tiny_model_file, damage
) -> None:
    model = tiny_model_file(tmp_path / "m.pt")
    cache_dir = tmp_path / "cache"

    def rank() -> np.ndarray:
        summary = run_to_end(summarise(model, image, cache_dir=cache_dir))
        return np.stack([summary.mean_entropy, summary.mean_margin])

    damaged_cache_is_recomputed(
        caplog, cache_dir, "summary-*.npz", DAMAGE[damage], rank
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, image) -> Path:
    from napari_xrm_al.core.training.configs import PretrainConfig

    config = PretrainConfig(
        features=(4, 8), steps=1, time_budget_s=None, batch_size=4,
        region_size=32, view_size=32, pool_voxels=20_000,
    )  # fmt: skip
    ckpt = run_to_end(pretrain(image, config=config))
    return save_checkpoint(tmp_path_factory.mktemp("enc") / "encoder.pt", ckpt)


@pytest.mark.parametrize("damage", ["truncated", "one bit flipped", "an array missing"])
def test_damaged_embedding_cache(tmp_path, caplog, image, encoder, damage) -> None:
    cache_dir = tmp_path / "cache"

    def rank() -> np.ndarray:
        ranking = run_to_end(first_ranking(encoder, image, 2, cache_dir=cache_dir))
        return ranking.scores

    damaged_cache_is_recomputed(
        caplog, cache_dir, "embedding-*.npz", DAMAGE[damage], rank
    )
