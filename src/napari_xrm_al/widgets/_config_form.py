"""A form of editors for the fields of a core config dataclass.

Each editor is built from the field's
:class:`~napari_xrm_al.core.settings.Setting` (label, range, tooltip, whether
it is advanced) and starts at the dataclass's default, so the widget, the
command line and the core never disagree about what a number means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_xrm_al.core.model.network import PRESETS
from napari_xrm_al.core.settings import (
    Setting,
    setting_value,
    settings,
    with_settings,
)
from napari_xrm_al.errors import XrmError

_MISSING = object()


def parse_features(text: str) -> tuple[int, ...]:
    """``'small'`` or ``'16, 16, 32, 64, 128, 16'`` → feature widths."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    try:
        widths = tuple(int(v) for v in re.split(r"[,\s]+", text) if v)
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise XrmError(
            f"Feature widths {text!r} must be a preset ({', '.join(PRESETS)}) or "
            "positive whole numbers separated by commas."
        )
    return widths


class ConfigForm(QWidget):
    """Editors for some fields of a config dataclass, described by their settings.

    Parameters
    ----------
    config_cls
        The dataclass (e.g. :class:`~napari_xrm_al.core.training.configs.TrainConfig`).
    names
        Which fields to show, in order (a number needs both ends of its
        range); the advanced ones go under "Advanced settings".
    """

    def __init__(self, config_cls: type, names: Sequence[str]) -> None:
        super().__init__()
        self.config_cls = config_cls
        described = settings(config_cls)
        self.fields: dict[str, Setting] = {name: described[name] for name in names}
        self.editors: dict[str, QWidget] = {}
        defaults = config_cls()
        basic, advanced = QFormLayout(), QFormLayout()
        for name, spec in self.fields.items():
            editor = self._editor(spec, setting_value(defaults, name))
            editor.setToolTip(spec.help)
            self.editors[name] = editor
            (advanced if spec.advanced else basic).addRow(spec.label, editor)
        self.advanced = QWidget()
        self.advanced.setLayout(advanced)
        self.advanced.setVisible(False)
        self.advanced_button = QPushButton("Advanced settings…", checkable=True)
        self.advanced_button.toggled.connect(self.advanced.setVisible)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(basic)
        if advanced.rowCount():
            layout.addWidget(self.advanced_button)
            layout.addWidget(self.advanced)
        else:
            self.advanced_button.setVisible(False)

    @staticmethod
    def _editor(spec: Setting, default: Any) -> QWidget:
        if spec.choices:
            combo = QComboBox()
            combo.addItems(list(spec.choices))
            combo.setCurrentText(str(default))
            return combo
        if isinstance(default, tuple):
            name = next((k for k, v in PRESETS.items() if v == default), None)
            return QLineEdit(name or ", ".join(str(v) for v in default))
        kind = float if spec.decimals else int
        box = QDoubleSpinBox(decimals=spec.decimals) if spec.decimals else QSpinBox()
        top = spec.maximum - (10**-spec.decimals if spec.exclusive_maximum else 0)
        box.setRange(kind(spec.minimum), kind(top))
        box.setSingleStep(kind(spec.step))
        if spec.special is not None:
            box.setSpecialValueText(spec.special)
        box.setValue(kind(spec.minimum if default is None else default))
        return box

    def value(self, name: str) -> Any:
        """The current value of field ``name`` (None for a special value)."""
        spec, editor = self.fields[name], self.editors[name]
        if isinstance(editor, QComboBox):
            return editor.currentText()
        if isinstance(editor, QLineEdit):
            return parse_features(editor.text())
        number = editor.value()
        if spec.special is not None and number == spec.minimum:
            return None
        return number if spec.decimals else int(number)

    def set_value(self, name: str, value: Any) -> None:
        """Set field ``name`` (None selects the special value)."""
        spec, editor = self.fields[name], self.editors[name]
        if isinstance(editor, QComboBox):
            editor.setCurrentText(str(value))
        elif isinstance(editor, QLineEdit):
            editor.setText(", ".join(str(v) for v in value))
        else:
            kind = float if spec.decimals else int
            editor.setValue(kind(spec.minimum if value is None else value))

    def load(self, record: Mapping[str, Any], names: Sequence[str] = ()) -> None:
        """Set the shown fields (only ``names``, when given) that ``record`` holds:
        a run's settings as a checkpoint keeps them (nested ones as dicts).
        A value the form cannot show (from another version) is left as it was.
        """
        for name in names or self.fields:
            value: Any = record
            for part in name.split("."):
                value = (
                    value.get(part, _MISSING)
                    if isinstance(value, Mapping)
                    else _MISSING
                )
            if value is _MISSING:
                continue
            try:
                self.set_value(name, value)
            except (TypeError, ValueError):
                continue

    def values(self) -> dict[str, Any]:
        """All shown fields."""
        return {name: self.value(name) for name in self.fields}

    def config(self, **overrides: Any) -> Any:
        """A config instance: the defaults, the form's values, then ``overrides``."""
        return with_settings(self.config_cls(), {**self.values(), **overrides})
