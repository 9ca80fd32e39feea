"""Wall time of one suggest-and-retrain cycle of the loop, end to end.

A project on the 128 × 256 × 256 sample with an encoder, a first model and
8 slices marked done (from the ground truth): the cycle is what the dock's
Suggest and Train steps run, ``rank_session`` (the default strategy, summary
cache cleared) then ``train_session`` (default training, or the settings given
with ``--set``). Pretraining and the first model are set up before the clock
starts. Target: ≤ 90 s on 2 CPU cores (issue 17).

Usage::

    .venv/bin/python benchmarks/bench_cycle.py --threads 2 [--set ema_decay=0.995]
        [--axes z,y,x] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench_active_learning import with_set_options
from napari_xrm_al.classes import ClassTable, dense_to_annotation
from napari_xrm_al.core.events import run_to_end
from napari_xrm_al.core.session.jobs import (
    pretrain_session,
    rank_session,
    session_for,
    train_session,
)
from napari_xrm_al.core.synthetic.sample import make_hbm_sample
from napari_xrm_al.core.training.configs import PretrainConfig, TrainConfig

#: The labelled slices: some in every layer of the sample.
DONE = (10, 30, 46, 57, 64, 76, 92, 110)


def main() -> None:
    """Set up a project, then time rank + train ``--repeat`` times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--axes", default="z", help="axes to rank along")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--pretrain-steps", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = with_set_options(TrainConfig(), args.set)
    sample = make_hbm_sample()
    truth = dense_to_annotation(sample.labels)
    folder = Path(tempfile.mkdtemp()) / "sample.xrmal"
    session, _ = session_for(None, sample.image, ClassTable.hbm(), folder=folder)
    with session:
        for z in DONE:
            session.annotations.write_slice(z, truth[z])
            session.mark_done(z)
        pre = PretrainConfig(steps=args.pretrain_steps, time_budget_s=None)
        run_to_end(pretrain_session(session, sample.image, pre))
        run_to_end(train_session(session, sample.image, TrainConfig(steps=50)))
        load = os.getloadavg()[0]
        for repeat in range(args.repeat):
            shutil.rmtree(folder / "cache", ignore_errors=True)
            t0 = time.perf_counter()
            run_to_end(rank_session(session, sample.image, axes=args.axes.split(",")))
            t1 = time.perf_counter()
            run_to_end(train_session(session, sample.image, config))
            t2 = time.perf_counter()
            print(
                json.dumps(
                    {
                        "repeat": repeat,
                        "rank_s": round(t1 - t0, 1),
                        "train_s": round(t2 - t1, 1),
                        "cycle_s": round(t2 - t0, 1),
                        "steps": config.n_steps(len(session.done)),
                        "settings": args.set,
                        "axes": args.axes,
                        "threads": args.threads,
                        "load_before": round(load, 2),
                        "load_after": round(os.getloadavg()[0], 2),
                    }
                ),
                flush=True,
            )
            load = os.getloadavg()[0]
    shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
