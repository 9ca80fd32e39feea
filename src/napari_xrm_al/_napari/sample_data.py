"""npe2 sample data: the synthetic HBM micro-bump volume and its ground truth.

napari's *File → Open Sample → XRM Active Learning* calls :func:`make_hbm_sample`;
``viewer.open_sample("napari-xrm-al", "hbm", seed=1, shape=(64, 128, 128))``
passes the keyword arguments through. Nothing here imports napari.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from npe2.types import FullLayerData

from napari_xrm_al._napari.layer_keys import CLASSES_KEY
from napari_xrm_al.classes import dense_to_annotation
from napari_xrm_al.core.synthetic import sample as hbm

IMAGE_NAME = "HBM sample"
GROUND_TRUTH_NAME = "HBM ground truth"


def sample_layer_data(
    sample: hbm.HbmSample, *, ground_truth_visible: bool = False
) -> list[FullLayerData]:
    """Image and ground-truth layer data (annotation ids) for ``sample``; the
    ground truth is the answer key, hidden unless asked for."""
    scale = tuple(sample.voxel_size)
    low, high = np.percentile(sample.image, [0.5, 99.8])
    image_meta = {
        "name": IMAGE_NAME,
        "scale": scale,
        "units": "um",
        "contrast_limits": (float(low), float(high)),
        "metadata": {"napari_xrm_al_sample": sample.params.to_dict()},
    }
    labels_meta = {
        "name": GROUND_TRUTH_NAME,
        "scale": scale,
        "units": "um",
        "colormap": sample.classes.napari_colormap(),
        "visible": ground_truth_visible,
        "opacity": 0.5,
        "metadata": {CLASSES_KEY: sample.classes.to_dict()},
    }
    return [
        (sample.image, image_meta, "image"),
        (dense_to_annotation(sample.labels), labels_meta, "labels"),
    ]


def make_hbm_sample(
    seed: int = 0, shape: Sequence[int] | None = None
) -> list[FullLayerData]:
    """The sample-data command: generate the volume (a second or two) and return
    its image and ground-truth layers."""
    overrides = {} if shape is None else {"shape": tuple(shape)}
    return sample_layer_data(hbm.make_hbm_sample(seed=seed, **overrides))
