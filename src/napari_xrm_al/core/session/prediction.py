"""A project's whole-volume prediction and a slice pre-filled from its model.

Like the jobs of :mod:`~napari_xrm_al.core.session.jobs`, generators that the
dock runs on a worker thread and the command line drives.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from napari_xrm_al.core.events import Progress
from napari_xrm_al.core.inference.fused_prediction import (
    predict_along,
    prediction_axes,
)
from napari_xrm_al.core.inference.predict import PredictConfig
from napari_xrm_al.core.inference.segmenter import Segmenter
from napari_xrm_al.core.session.annotations import ANNOTATIONS
from napari_xrm_al.core.session.session import SESSION_FILE, Session
from napari_xrm_al.core.slice_refs import SliceRef
from napari_xrm_al.errors import XrmError

PREDICTION = "prediction.zarr"
UNCERTAINTY = "uncertainty.zarr"


@dataclass
class Prediction:
    """A whole-volume prediction saved in the session folder.

    Attributes
    ----------
    labels
        Lazy ``(z, y, x)`` class map in annotation ids ``1..C``.
    uncertainty
        Lazy ``uint8`` entropy / ln C × 255, when asked for.
    class_fraction
        ``(C,)`` share of the volume given to each class.
    model
        The model file that predicted it, relative to the session folder.
    axes
        The axes it was predicted along (fused when several).
    note
        Why fewer axes than the model was trained along were used ("" when
        none is left out).
    """

    labels: zarr.Array
    uncertainty: zarr.Array | None
    class_fraction: np.ndarray
    model: str
    axes: tuple[str, ...] = ("z",)
    note: str = ""

    def along(self) -> str:
        """``'predicted along y'``, ``'predicted along z, y and averaged'``, or
        the note."""
        if self.note:
            return self.note
        if len(self.axes) > 1:
            return f"predicted along {', '.join(self.axes)} and averaged"
        return f"predicted along {self.axes[0]}"


def predict_session(
    session: Session,
    image_data: Any,
    *,
    uncertainty: bool = False,
    tta: str = "none",
    device: str | torch.device | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict the whole scan with the latest model into the session folder.

    Along the axes of the model's training slices
    (:func:`~napari_xrm_al.core.inference.fused_prediction.prediction_axes`:
    the mean of the predictions along each when several).
    ``prediction.zarr`` (and ``uncertainty.zarr``) replace the previous ones
    only when the run completes. ``tta``: test-time augmentation
    (:data:`~napari_xrm_al.core.inference.slice_inference.TTA_MODES`).
    """
    model_path = session.latest_model
    if model_path is None:
        raise XrmError("Train a model before predicting the volume.")
    segmenter = Segmenter.from_checkpoint(model_path, device=device)
    axes, note = prediction_axes(segmenter.checkpoint, image_data.shape)
    labels_path = session.folder / PREDICTION
    uncertainty_path = session.folder / UNCERTAINTY if uncertainty else None
    config = PredictConfig(summaries=False, device=device, tta=tta)
    provenance = {
        **session.provenance(),
        "model": session.paths.relative(model_path),
        "tta": tta,
        "axes": ",".join(axes),
    }
    result = yield from predict_along(
        segmenter,
        image_data,
        axes,
        config,
        out=labels_path,
        uncertainty_out=uncertainty_path,
        provenance=provenance,
    )
    return Prediction(
        labels=zarr.open_array(labels_path, mode="r"),
        uncertainty=(
            zarr.open_array(uncertainty_path, mode="r") if uncertainty_path else None
        ),
        class_fraction=result.class_fraction,
        model=session.paths.relative(model_path),
        axes=axes,
        note=note,
    )


def predict_slice_session(
    session: Session, image_data: Any, item: SliceRef | int
) -> Generator[Progress, None, np.ndarray]:
    """The latest model's annotation ids ``1..C`` for one slice (a plain index:
    along the session axis)."""
    model_path = session.latest_model
    if model_path is None:
        raise XrmError("Train a model before pre-filling a slice from it.")
    ref = session.ref(item)
    yield Progress("predict", 0, 1, message=f"slice {ref}")
    segmenter = Segmenter.from_checkpoint(model_path)
    probs = segmenter.predict_slices(
        image_data, [ref.index], PredictConfig(axis=ref.axis)
    )
    return (probs[0].argmax(0) + 1).astype(session.annotations.array.dtype)


def project_inputs(session: Session) -> dict[str, Path | None]:
    """The files a session reads, by name: an export must overwrite none of them."""
    return {
        "the image": Path(session.image.path) if session.image.path else None,
        "the project's session file": session.folder / SESSION_FILE,
        "the project's annotations": session.folder / ANNOTATIONS,
        "the project's models": session.folder / "models",
        "the project's prediction": session.folder / PREDICTION,
        "the project's uncertainty": session.folder / UNCERTAINTY,
    }
