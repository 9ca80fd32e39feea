"""A form of spin boxes for the fields of a core config dataclass.

Defaults are the dataclass's own; tooltips are the field descriptions of its
numpy-style docstring (the core documents each field in one line for this), so
the widget and the core never disagree about what a number means.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
from napari_xrm_al.errors import XrmError

_HEADER = re.compile(r"^-{3,}\s*$")


def field_docs(cls: type) -> dict[str, str]:
    """Field name → description, from the ``Parameters`` sections of the
    docstrings of ``cls`` and its base classes (the subclass wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_parameters(klass.__dict__.get("__doc__")))
    return docs


def _parameters(doc: str | None) -> dict[str, str]:
    """The ``Parameters`` section of one numpy-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    docs: dict[str, str] = {}
    names: list[str] = []
    inside = False
    for i, line in enumerate(lines):
        underline = i + 1 < len(lines) and _HEADER.match(lines[i + 1])
        if underline:
            inside = line.strip() == "Parameters"
            names = []
            continue
        if not inside or _HEADER.match(line) or not line.strip():
            continue
        if not line.startswith(" "):
            names = [n.strip() for n in line.split(":")[0].split(",")]
            continue
        for name in names:
            docs[name] = f"{docs.get(name, '')} {line.strip()}".strip()
    return docs


@dataclass(frozen=True)
class Field:
    """How one config field is edited.

    Parameters
    ----------
    name
        Dataclass field name.
    label
        Row label.
    minimum, maximum, step, decimals
        Spin-box range; ``decimals > 0`` gives a floating-point box.
    special
        Text shown at ``minimum``, which then means ``None`` (e.g. ``'auto'``).
    choices
        Allowed strings (a drop-down instead of a spin box).
    advanced
        Shown only under "Advanced settings".
    """

    name: str
    label: str
    minimum: float = 1
    maximum: float = 1_000_000
    step: float = 1
    decimals: int = 0
    special: str | None = None
    choices: tuple[str, ...] = ()
    advanced: bool = False


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
    """Editors for some fields of a config dataclass.

    Parameters
    ----------
    config_cls
        The dataclass (e.g. :class:`~napari_xrm_al.core.training.train.TrainConfig`).
    fields
        Which fields to show, in order.
    """

    def __init__(self, config_cls: type, fields: Sequence[Field]) -> None:
        super().__init__()
        self.config_cls = config_cls
        self.fields = {f.name: f for f in fields}
        self.editors: dict[str, QWidget] = {}
        defaults = config_cls()
        docs = field_docs(config_cls)
        basic, advanced = QFormLayout(), QFormLayout()
        for spec in fields:
            editor = self._editor(spec, getattr(defaults, spec.name))
            editor.setToolTip(docs.get(spec.name, ""))
            self.editors[spec.name] = editor
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
    def _editor(spec: Field, default: Any) -> QWidget:
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
        box.setRange(kind(spec.minimum), kind(spec.maximum))
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

    def values(self) -> dict[str, Any]:
        """All shown fields."""
        return {name: self.value(name) for name in self.fields}

    def config(self, **overrides: Any) -> Any:
        """A config instance: the defaults, the form's values, then ``overrides``."""
        return dataclasses.replace(self.config_cls(), **self.values(), **overrides)
