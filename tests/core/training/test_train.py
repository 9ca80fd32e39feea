from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_xrm_al.classes import ClassTable
from napari_xrm_al.core.events import Progress, run_to_end
from napari_xrm_al.core.inference import slice_inference as inference
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.inference.slice_inference import (
    bf16_supported,
    training_precision,
)
from napari_xrm_al.core.model.checkpoint import load_checkpoint
from napari_xrm_al.core.slices import read_slices
from napari_xrm_al.core.training.losses import MaskedSegLoss, class_weights
from napari_xrm_al.core.training.metrics import evaluate
from napari_xrm_al.core.training.schedule import lr_factor
from napari_xrm_al.core.training.step_loop import RunOptions
from napari_xrm_al.core.training.train import effective_decay, final_metrics, train
from napari_xrm_al.core.training.trainset import load_labelled
from napari_xrm_al.core.training.validation import segment_slices
from napari_xrm_al.errors import XrmError

Y_SLICES = [12, 36, 60, 84]


def segment(ckpt, image, axis="y"):
    """Dense prediction of a whole (small) volume along ``axis``."""
    model = Segmenter.build(ckpt).net
    ax = {"z": 0, "y": 1, "x": 2}[axis]
    x = ckpt.normalisation.apply(
        read_slices(image, range(image.shape[ax]), axis, model.cfg.context)
    )
    return np.moveaxis(segment_slices(model, x, torch.device("cpu")), 0, ax)


def train_dense(sample, slices, config, **options):
    """``train`` on the dense ground truth of ``sample``'s ``slices``."""
    return train(
        sample.image,
        sample.labels,
        slices,
        sample.classes,
        dense_labels=True,
        config=config,
        **options,
    )


def test_few_slices_segment_another_scan(sample0, sample1, annotate, tiny_train_config):
    labels = annotate(sample0.labels, Y_SLICES, axis=1)
    config = dataclasses.replace(
        tiny_train_config, features=(8, 16, 32), steps=200, batch_size=8, crop_size=48
    )
    ckpt = run_to_end(
        train(sample0.image, labels, Y_SLICES, sample0.classes, axis="y", config=config)
    )
    result = evaluate(segment(ckpt, sample1.image), sample1.labels, sample1.classes)
    majority = evaluate(np.zeros_like(sample1.labels), sample1.labels, sample1.classes)
    assert result["miou"] > majority["miou"] + 0.2
    assert min(result["iou/copper"], result["iou/solder"]) > 0.4


def test_progress_events_and_schedule(sample0, tiny_train_config):
    gen = train_dense(sample0, [3, 20], dataclasses.replace(tiny_train_config, steps=5))
    events = []
    ckpt = run_to_end(gen, events.append)
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert all(isinstance(e, Progress) and e.stage == "train" for e in events)
    assert all(e.loss is not None and e.eta_seconds is not None for e in events)
    assert ckpt.kind == "segmenter" and ckpt.history["steps"] == 5
    assert ckpt.classes == sample0.classes
    assert lr_factor(0.0, 0.1) < lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(1.0, 0.1) == pytest.approx(0.01)


def test_order_of_the_labelled_slices_does_not_change_training(
    sample0, tiny_train_config
):
    def weights(slices):
        gen = train_dense(
            sample0,
            slices,
            dataclasses.replace(tiny_train_config, steps=4),
            run=RunOptions(seed=3),
        )
        ckpt = run_to_end(gen)
        return ckpt.history["slices"], ckpt.state_dict

    slices_a, state_a = weights([20, 3, 11])
    slices_b, state_b = weights([11, 20, 3, 20])
    assert slices_a == slices_b == [["z", 3], ["z", 11], ["z", 20]]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_closing_early_saves_the_best_so_far(tmp_path, sample0, tiny_train_config):
    out = tmp_path / "model.pt"
    gen = train_dense(
        sample0,
        [10],
        dataclasses.replace(tiny_train_config, steps=50),
        run=RunOptions(out=out),
    )
    for event in gen:
        if event.step == 3:
            break
    assert not out.exists()
    gen.close()
    ckpt = load_checkpoint(out, kind="segmenter")
    assert ckpt.history["stopped"] == "cancelled" and ckpt.history["steps"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_time_budget_ends_training(sample0, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, steps=10_000, time_budget_s=0.5)
    ckpt = run_to_end(train_dense(sample0, [5], config))
    assert ckpt.history["stopped"] == "time budget"
    assert 0 < ckpt.history["steps"] < 10_000


def test_validation_metrics_choose_the_weights(sample0, sample1, tiny_train_config):
    config = dataclasses.replace(tiny_train_config, steps=6, validate_every=2)
    events = []
    ckpt = run_to_end(
        train_dense(
            sample0,
            [8, 16],
            config,
            validation=(sample1.image, sample1.labels, [4, 12]),
        ),
        events.append,
    )
    scored = [e for e in events if e.metrics]
    assert [e.step for e in scored] == [2, 4, 6]
    assert {"miou", "iou/void", "dice/solder"} <= set(scored[0].metrics)
    best = max(ckpt.history["validation"], key=lambda v: v["miou"])
    with torch.no_grad():
        again = segment(ckpt, sample1.image[[3, 4, 5, 11, 12, 13]], axis="z")[[1, 4]]
    got = evaluate(again, sample1.labels[[4, 12]], sample1.classes)
    assert got["miou"] == pytest.approx(best["miou"])


def test_unannotated_pixels_do_not_count():
    loss = MaskedSegLoss(3, "dice_ce", class_weights(np.array([10, 5, 1])))
    focal = MaskedSegLoss(3, "dice_focal")
    target = torch.randint(-1, 3, (2, 8, 8))
    for fn in (loss, focal):
        logits = torch.randn(2, 3, 8, 8, requires_grad=True)
        value = fn(logits, target)
        value.backward()
        ignored = (target == -1)[:, None].expand_as(logits)
        assert logits.grad[ignored].abs().max() == 0
        assert logits.grad[~ignored].abs().max() > 0
        changed = logits.detach().clone()
        changed[ignored] = 100.0
        assert float(fn(changed, target)) == pytest.approx(float(value.detach()))


def test_class_weights_favour_rare_classes():
    w = class_weights(np.array([1000, 100, 0, 1]))
    assert w[3] > w[1] > w[0] > 0 and w[2] == 0
    freq = np.array([1000, 100, 0, 1]) / 1101
    assert (freq * w).sum() == pytest.approx(1.0)
    with pytest.raises(XrmError, match="No annotated"):
        class_weights(np.zeros(3))


def test_rare_crops_are_oversampled(sample0):
    data = load_labelled(
        sample0.image,
        sample0.labels,
        range(0, 32, 2),
        sample0.classes,
        dense_labels=True,
        pad_to=32,
    )
    void = sample0.classes.index("void")
    rng = np.random.default_rng(0)
    share = [
        np.mean([(data.batch(1, 32, f, rng)[1] == void).any() for _ in range(200)])
        for f in (0.0, 1.0)
    ]
    assert share[1] > share[0] + 0.3


def test_sparse_annotation_errors(sample0, annotate, tiny_train_config):
    classes = sample0.classes
    labels = annotate(sample0.labels, [4])
    with pytest.raises(XrmError, match="None of the slices"):
        run_to_end(
            train(sample0.image, labels, [5, 6], classes, config=tiny_train_config)
        )
    labels[4, 0, 0] = 9
    with pytest.raises(XrmError, match="Label value 9 in slice 4"):
        run_to_end(train(sample0.image, labels, [4], classes, config=tiny_train_config))
    with pytest.raises(XrmError, match="dense class ids 0..3"):
        run_to_end(
            train(
                sample0.image,
                labels,
                [4],
                classes,
                dense_labels=True,
                config=tiny_train_config,
            )
        )
    with pytest.raises(XrmError, match="shape"):
        run_to_end(
            train(sample0.image, labels[:3], [1], classes, config=tiny_train_config)
        )


def test_partial_annotation_trains_on_any_axis(sample0, tiny_train_config):
    labels = np.zeros(sample0.labels.shape, np.uint8)
    labels[:, :, 40] = sample0.labels[:, :, 40] + 1
    labels[:10, :, 40] = 0  # part of the slice left unannotated
    ckpt = run_to_end(
        train(
            sample0.image,
            labels,
            [40, 41],
            sample0.classes,
            axis="x",
            config=tiny_train_config,
        )
    )
    assert ckpt.axis == "x" and ckpt.history["slices"] == [["x", 40]]
    counts = np.bincount(sample0.labels[10:, :, 40].ravel(), minlength=4)
    assert ckpt.history["labelled_counts"] == counts.tolist()


def test_mismatched_init_is_refused(sample0, tiny_train_config):
    ckpt = run_to_end(train_dense(sample0, [5], tiny_train_config))
    other = ClassTable(("background", "metal", "void"))
    with pytest.raises(XrmError, match="do not match"):
        run_to_end(
            train(
                sample0.image,
                sample0.labels.clip(0, 2),
                [5],
                other,
                dense_labels=True,
                init=ckpt,
                config=tiny_train_config,
            )
        )


def test_training_precision_is_chosen_per_device(monkeypatch):
    cpu = torch.device("cpu")
    assert training_precision("float32", cpu) == "float32"
    expected = "bfloat16" if bf16_supported(cpu) else "float32"
    assert training_precision("auto", cpu) == expected
    with pytest.raises(XrmError, match="precision"):
        training_precision("float16", cpu)
    monkeypatch.setattr(inference, "native_bf16_cpu", lambda: False)
    assert training_precision("auto", cpu) == "float32"
    with pytest.raises(XrmError, match="bfloat16"):
        training_precision("bfloat16", cpu)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_loss_falls_in_either_precision(sample0, tiny_train_config, precision):
    if precision == "bfloat16" and not bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16")
    config = dataclasses.replace(
        tiny_train_config, steps=60, batch_size=8, precision=precision
    )
    ckpt = run_to_end(train_dense(sample0, [3, 20], config))
    losses = ckpt.history["loss"]
    assert ckpt.history["precision"] == precision
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert all(
        v.dtype == torch.float32
        for v in ckpt.state_dict.values()
        if v.is_floating_point()
    )


def test_weight_averaging_returns_the_average_from_the_first_step(
    sample0, tiny_train_config
):
    def weights(**changes):
        config = dataclasses.replace(tiny_train_config, **changes)
        gen = train_dense(sample0, [3, 20], config)
        return run_to_end(gen).state_dict

    def distance(a, b):
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)

    after_one_step = weights(steps=1, ema_decay=0.0)
    last = weights(steps=8, ema_decay=0.0)
    assert distance(after_one_step, last) > 1e-3
    # 8 steps cap the decay at 1 - 1 / (0.25 * 8) = 0.5: the average starts
    # from the weights after the first step and differs from both ends.
    capped = weights(steps=8, ema_decay=1 - 1e-7)
    assert distance(capped, after_one_step) > 1e-3
    assert distance(capped, last) > 1e-4
    assert distance(capped, weights(steps=8, ema_decay=0.5)) < 1e-5
    with pytest.raises(XrmError, match="ema_decay"):
        weights(ema_decay=1.0)


@pytest.mark.parametrize(
    ("decay", "steps", "expected"),
    [(0.995, 800, 0.995), (0.995, 400, 0.99), (0.995, 1600, 0.995), (0.0, 800, 0.0),
     (0.9, 4, 0.0)],
)  # fmt: skip
def test_the_average_covers_at_most_a_quarter_of_the_run(decay, steps, expected):
    assert effective_decay(decay, steps) == pytest.approx(expected)


def test_final_metrics_are_the_last_loss_and_validation():
    history = {
        "loss": [0.9, 0.4],
        "validation": [{"step": 1, "miou": 0.2}, {"step": 2, "miou": 0.5}],
    }
    assert final_metrics(history) == {"final_loss": 0.4, "step": 2, "miou": 0.5}
    assert final_metrics({"loss": [], "validation": []}) == {}
