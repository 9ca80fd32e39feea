"""Helpers shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.model.checkpoint import Checkpoint, save_checkpoint
from napari_xrm_al.core.model.network import ModelConfig, SliceSegmenter
from napari_xrm_al.core.model.normalization import Normalisation
from napari_xrm_al.io.atomic import host_tag


def save_tiny_model(path, seed: int = 0):
    """A real (untrained) tiny segmenter checkpoint at ``path``, in well under 1 s."""
    torch.manual_seed(seed)
    config = ModelConfig(n_classes=4, context=1, features=(4, 8))
    model = SliceSegmenter(config)
    ckpt = Checkpoint(
        "segmenter",
        config,
        model.state_dict(),
        Normalisation(0, 1),
        "z",
        ClassTable.hbm(),
    )
    return save_checkpoint(path, ckpt)


def make_sparse_zarr(path, shape, dtype=np.float32, fill=0, chunks=None) -> zarr.Array:
    """A zarr v3 array holding only its fill value: nothing written to disk,
    so any shape costs nothing until read. ``chunks`` default to one slice
    of at most 256² a chunk."""
    chunks = chunks or (1, *(min(256, n) for n in shape[1:]))
    return zarr.create_array(
        path, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill
    )


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tests share two cores with other work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sparse_zarr():
    """``sparse_zarr(path, shape, dtype=float32, fill=0, chunks=None)``: a zarr
    array of any size holding only its fill value (nothing on disk)."""
    return make_sparse_zarr


@pytest.fixture
def tiny_model_file():
    """``tiny_model_file(path, seed=0)``: write a real tiny segmenter checkpoint."""
    return save_tiny_model


@pytest.fixture
def dead_pid() -> int:
    """The id of a process of this host that has ended (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def make_leftover(
    folder: Path, final: str, pid: int, *, tag: str = "tmp", host: str | None = None
) -> Path:
    """A temporary sibling of ``final`` as process ``pid`` (of ``host``) names it."""
    path = folder / f".{final}.{tag}-{pid}-{host or host_tag()}-0123abcd"
    path.write_bytes(b"partial")
    return path


@pytest.fixture
def leftover():
    """``leftover(folder, final, pid, tag=, host=)``: a writer's temporary file."""
    return make_leftover


@pytest.fixture
def fifo():
    """``fifo(path)``: make a named pipe at ``path`` and watch it.

    Opening a FIFO to read blocks until someone writes. A watchdog opens
    every FIFO made here for writing whenever a reader has it open (so the
    code under test never hangs) and the test fails if that ever happened:
    code that refuses FIFOs up front never opens one.
    """
    made: list[Path] = []
    opened: list[Path] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for path in made:
                try:  # succeeds only while a reader holds the FIFO open
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                opened.append(path)
                os.close(fd)  # the reader sees end-of-file

    def make(path: Path) -> Path:
        os.mkfifo(path)
        made.append(Path(path))
        return Path(path)

    watchdog = threading.Thread(target=watch, daemon=True)
    watchdog.start()
    yield make
    stop.set()
    watchdog.join()
    assert not opened, f"the code under test opened the FIFO {opened[0]} (and blocked)"
