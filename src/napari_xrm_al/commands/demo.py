"""``napari-xrm-al demo``: napari with the synthetic HBM sample and the plugin's widgets."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from napari_xrm_al._napari.reader import PLUGIN_NAME as PLUGIN
from napari_xrm_al._napari.reader import prefer_this_reader
from napari_xrm_al.commands.sample import add_sample_options, params_from_args
from napari_xrm_al.core.synthetic.params import SampleParams
from napari_xrm_al.core.synthetic.sample import make_hbm_sample

if TYPE_CHECKING:
    import napari


def open_demo(
    viewer: napari.Viewer,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    **overrides: Any,
) -> None:
    """Add the sample (ground truth hidden, image selected, axes named z, y, x)
    to ``viewer`` and dock the plugin's widgets, tabbed, the active-learning
    tab in front (so the window fits a 1366 x 768 screen).

    ``overrides`` are further :class:`SampleParams` fields (e.g. ``die_thickness``).
    """
    from npe2 import PluginManager
    from qtpy.QtCore import QTimer

    from napari_xrm_al._napari.sample_data import sample_layer_data

    if shape is not None:
        overrides["shape"] = tuple(shape)
    sample = make_hbm_sample(SampleParams(seed=seed), **overrides)
    layers = [
        getattr(viewer, f"add_{layer_type}")(data, **meta)
        for data, meta, layer_type in sample_layer_data(sample)
    ]
    # The image, not the answer key, is the layer a first key press acts on.
    viewer.layers.selection.active = layers[0]
    viewer.dims.axis_labels = ("z", "y", "x")
    manifest = PluginManager.instance().get_manifest(PLUGIN)
    docks = [
        viewer.window.add_plugin_dock_widget(PLUGIN, w.display_name, tabify=True)[0]
        for w in manifest.contributions.widgets or ()
    ]
    if docks:  # show the loop's tab once Qt has laid out the tabs
        QTimer.singleShot(0, docks[0].raise_)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="open napari with the synthetic HBM sample and the plugin's widgets",
        description=(
            "Open napari with the synthetic HBM micro-bump volume (its ground truth "
            "as a hidden Labels layer) and the plugin's widgets docked."
        ),
    )
    add_sample_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the viewer and block until it is closed."""
    import napari

    params = params_from_args(args)
    prefer_this_reader()  # files dropped on the demo open without a dialog
    viewer = napari.Viewer(title="napari-xrm-al demo")
    open_demo(viewer, **params.to_dict())
    napari.run()
    return 0
