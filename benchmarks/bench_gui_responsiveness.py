"""Does the napari GUI stay responsive while the dock's jobs run?

A ``QTimer`` probe fires every 10 ms on the GUI thread and records when it
actually ran; the largest gap between two probes (about 10 ms when idle) is
the longest the event loop stalled. Each job of the Active learning dock (pretrain, train, rank, predict)
runs on the synthetic sample in a shown viewer (under Xvfb on a headless
machine), started through the widget's public methods as a user's click would,
a second after the previous one ended. The time the GUI thread spends showing a
job's result once it is over (new layers, plots) is reported apart.

Run::

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python benchmarks/bench_gui_responsiveness.py

Options: ``--shape Z Y X`` (sample size), ``--pretrain-steps``, ``--train-steps``,
``--threads`` (torch intra-op threads; default torch's own choice).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

PROBE_MS = 10
#: The responsiveness target of the issue: no stall above this.
TARGET_MS = 100


class Probe:
    """Records the times a 10 ms QTimer really fires, and marked intervals."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.times: list[float] = []
        self.marked: list[tuple[float, float]] = []
        self.timer = QTimer()
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.times.append(time.perf_counter())

    def start(self) -> None:
        self.times, self.marked = [time.perf_counter()], []
        self.timer.start()

    def timed(self, func):
        """``func`` wrapped so that the time it runs is marked."""

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.marked.append((t0, time.perf_counter()))

        return wrapper

    def stop(self) -> dict[str, float]:
        """Gap statistics; gaps overlapping a marked interval are reported apart."""
        self.timer.stop()
        self._tick()
        times = np.asarray(self.times)
        gaps = np.diff(times) * 1000
        marked = np.zeros(len(gaps), bool)
        for a, b in self.marked:
            marked |= (times[1:] >= a) & (times[:-1] <= b)
        job = gaps[~marked]
        return {
            "max_gap_ms": round(float(job.max()), 1),
            "p99_gap_ms": round(float(np.percentile(job, 99)), 1),
            "gaps_over_target": int((job > TARGET_MS).sum()),
            "probes": len(job),
            "result_display_ms": round(float(gaps[marked].max()), 1)
            if marked.any()
            else 0.0,
        }


def settle(app, seconds: float) -> None:
    """Pump events for ``seconds`` (redraws left over from the previous step)."""
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        app.processEvents()
        time.sleep(0.001)


def run_job(app, dock, start, probe: Probe) -> dict[str, float]:
    """Start a job with ``start()`` and pump events until it ends, probing.

    A second passes first, as when a user reads the last result and clicks.
    """
    settle(app, 1.0)
    probe.start()
    t0 = time.perf_counter()
    worker = start()
    if worker is None:
        raise RuntimeError("the job did not start")
    while dock.runner.busy:
        app.processEvents()
        time.sleep(0.001)
    result = probe.stop()
    result["job_s"] = round(time.perf_counter() - t0, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    parser.add_argument("--pretrain-steps", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--json", type=Path, default=None, help="also write results here"
    )
    args = parser.parse_args()

    import torch

    import napari
    from napari_xrm_al._napari.sample_data import sample_layer_data
    from napari_xrm_al.classes import dense_to_annotation
    from napari_xrm_al.core.synthetic.sample import make_hbm_sample
    from napari_xrm_al.widgets.active_learning_dock import ActiveLearningWidget

    if args.threads:
        torch.set_num_threads(args.threads)
    sample = make_hbm_sample(seed=0, shape=tuple(args.shape))
    viewer = napari.Viewer(show=True)
    for data, meta, kind in sample_layer_data(sample, ground_truth_visible=False):
        getattr(viewer, f"add_{kind}")(data, **meta)
    dock = ActiveLearningWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Active learning")
    app = napari.qt.get_qapp()
    probe = Probe()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dock.data.folder_edit.setText(str(Path(tmp) / "bench.xrmal"))
        dock.data.open_project()
        dock.pretrain.form.set_value("steps", args.pretrain_steps)
        dock.pretrain.form.set_value("time_budget_s", None)
        dock.train.form.set_value("steps", args.train_steps)
        truth = dense_to_annotation(sample.labels)
        z = args.shape[0]
        for index in (z // 4, z // 2, 3 * z // 4):
            dock.annotations.layer.data[index] = truth[index]
            dock.mark_done(index)
        # Idle baseline: the same probe with nothing running (after the
        # window has settled), to tell machine load from our own stalls.
        settle(app, 2.0)
        probe.start()
        settle(app, 2.0)
        results["idle"] = probe.stop()
        # The handlers that show a job's result (new layers, plots) run on the
        # GUI thread once the job is over; their time is reported apart.
        dock.pretrain.show_result = probe.timed(dock.pretrain.show_result)
        dock.train.show_result = probe.timed(dock.train.show_result)
        dock.suggest.show_ranking = probe.timed(dock.suggest.show_ranking)
        dock.predict.show_prediction = probe.timed(dock.predict.show_prediction)
        for name, start in (
            ("pretrain", dock.pretrain.start),
            ("train", dock.train.start),
            ("rank", dock.suggest.start),
            ("predict", dock.predict.start),
        ):
            results[name] = run_job(app, dock, start, probe)
            print(name, results[name], flush=True)
    viewer.close()

    print(f"\nshape {tuple(args.shape)}, torch threads per job {dock.runner.threads}")
    print(
        "| job | job time (s) | max gap (ms) | p99 gap (ms) | gaps > 100 ms "
        "| showing the result (ms) |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r.get('job_s', '–')} | {r['max_gap_ms']} | "
            f"{r['p99_gap_ms']} | {r['gaps_over_target']} of {r['probes']} | "
            f"{r['result_display_ms'] or '–'} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
