"""The dock's check of slices along several axes of anisotropic voxels.

The Suggest step (axes to rank) and the Train step (axes of the done slices)
both warn, or refuse unless forced, as the command line does with
``--force-anisotropic`` (:func:`~napari_xrm_al.core.slice_refs.anisotropy_note`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from napari_xrm_al._napari.writer import layer_voxel_size
from napari_xrm_al.core.slice_refs import anisotropy_note
from napari_xrm_al.errors import XrmError

if TYPE_CHECKING:
    from napari.layers import Image

#: The control that forces slices along several axes of anisotropic voxels.
FORCE_TEXT = "Allow anisotropic voxels"


def image_voxel_size(layer: Image | None) -> tuple[float, ...] | None:
    """Voxel size of an image layer from its scale and units (None if unknown)."""
    if layer is None:
        return None
    return layer_voxel_size({"scale": layer.scale, "units": layer.units})


class AnisotropyGuard(QWidget):
    """A note under a step's settings and the box that forces its refusal.

    Parameters
    ----------
    what
        What the step does with such slices, for the box's tooltip
        (e.g. "Rank slices").
    """

    def __init__(self, what: str) -> None:
        super().__init__()
        self.force_box = QCheckBox(FORCE_TEXT)
        self.force_box.setToolTip(
            f"{what} along y and x even though the voxels are far from cubic: "
            "the network sees the structures stretched there."
        )
        self.force_box.setVisible(False)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.force_box)
        layout.addWidget(self.note)

    def check(
        self, voxel_size: Sequence[float] | None, axes: Iterable[int]
    ) -> str | None:
        """The note for slices along ``axes``; :class:`XrmError` when refused
        (the box unchecked)."""
        return anisotropy_note(
            voxel_size,
            axes,
            force=self.force_box.isChecked(),
            force_option=f"'{FORCE_TEXT}'",
        )

    def show_check(
        self, voxel_size: Sequence[float] | None, axes: Iterable[int]
    ) -> None:
        """Show the note, or the refusal (in red, with the box), for ``axes``."""
        axes = set(axes)
        try:
            note, refused = self.check(voxel_size, axes), False
        except XrmError as exc:
            note, refused = str(exc), True
        self.note.setText(note if refused or not note else f"Note: {note}")
        self.note.setStyleSheet("color: #e0533c;" if refused else "")
        self.note.setVisible(bool(note))
        self.force_box.setVisible(refused or self.force_box.isChecked())
