"""Reading within a memory limit: volumes stored in chunks larger than the limit
are refused on opening before any chunk is read, and reads from memory-mapped
TIFFs leave no file pages in the process's resident memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_xrm_al.core.slices import read_slices
from napari_xrm_al.errors import InputError
from napari_xrm_al.io import zarr_volume
from napari_xrm_al.io.array_reads import subsample, volume_fingerprint
from napari_xrm_al.io.volumes import open_volume

SHAPE = (2, 2048, 2048)  # one float32 slice: 16 MiB


def one_chunk_per_slice_zarr(folder: Path) -> Path:
    path = folder / "big_chunks.zarr"
    array = zarr.create_array(path, shape=SHAPE, chunks=(1, *SHAPE[1:]), dtype="f4")
    array[:] = 1.0  # compresses to almost nothing, decodes to 16 MiB a chunk
    return path


def one_strip_per_page_tiff(folder: Path) -> Path:
    path = folder / "big_strips.tif"
    tifffile.imwrite(
        path,
        np.ones(SHAPE, np.float32),
        compression="zlib",
        rowsperstrip=SHAPE[1],
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    return path


@pytest.mark.parametrize("make", [one_chunk_per_slice_zarr, one_strip_per_page_tiff])
def test_chunks_larger_than_the_limit_are_refused_before_any_is_read(
    tmp_path, monkeypatch, make
):
    path = make(tmp_path)
    chunk_reads = []
    get = zarr_volume.RegularFileStore.get

    async def counting_get(self, key, *args, **kwargs):
        if not key.endswith(("zarr.json", ".zarray", ".zattrs", ".zgroup")):
            chunk_reads.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr_volume.RegularFileStore, "get", counting_get)
    with pytest.raises(InputError) as refused:
        open_volume(path, max_memory=8 * 2**20)
    message = str(refused.value)
    assert message.startswith(f"{path}: is stored in chunks of 1 × 2048 × 2048")
    assert "(16 MiB each" in message and "limit of 8 MiB" in message
    assert "\n" not in message and not chunk_reads
    assert open_volume(path, max_memory=16 * 2**20).shape == SHAPE


def file_pages_mib() -> int:
    """Resident memory of this process backed by mapped files (Linux)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    found = [int(line.split()[1]) for line in lines if line.startswith("RssFile:")]
    if not found:
        pytest.skip("needs RssFile in /proc/self/status (Linux)")
    return found[0] // 1024


def test_reads_from_a_memory_mapped_tiff_leave_no_file_pages_resident(tmp_path):
    """A sparse 2 × 6000 × 6000 uint16 TIFF (72 MB a slice) read whole, sampled
    and fingerprinted: the pages read are dropped again (before: +140 MB)."""
    path = tmp_path / "mapped.tif"
    mapped = tifffile.memmap(
        path,
        shape=(2, 6000, 6000),
        dtype=np.uint16,
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    mapped[1, 10, 10] = 7
    mapped.flush()
    del mapped
    before = file_pages_mib()
    volume = open_volume(path)
    assert isinstance(volume.data, np.memmap)
    whole = read_slices(volume.data, [1], "z", 1)
    assert whole[0, 1, 10, 10] == 7 and whole.sum() == 7 * 2
    assert subsample(volume.data, 4_000_000).size > 1_000_000
    volume_fingerprint(volume.data)
    assert file_pages_mib() - before < 8
