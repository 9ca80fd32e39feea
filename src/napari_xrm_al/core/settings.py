"""Settings described once: the label, range and help of a config field.

A core configuration dataclass declares each field a person may set with
:func:`setting` (or, for one shared by several configurations, a
:class:`Setting`'s :meth:`~Setting.field`), which keeps the :class:`Setting` in
the field's metadata. The dock's forms (``widgets/_config_form.py``) and the
command line's options (``commands/_settings.py``) are built from what
:func:`settings` reads back, so each label, range and help text is written once.
A field holding a configuration of its own (``TrainConfig.augment``) lends its
described fields under dotted names (``"augment.histogram_shift"``), which
:func:`setting_value`, :func:`setting_type` and :func:`with_settings` follow.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from napari_xrm_al.errors import XrmError

#: The key of a field's metadata that holds its :class:`Setting`.
KEY = "napari_xrm_al.setting"


@dataclass(frozen=True)
class Setting:
    """How a person sets one configuration field.

    Parameters
    ----------
    label
        Short name: the dock's row label.
    help
        What the value means: the dock's tooltip and the option's help.
    minimum, maximum
        Allowed range (None = unbounded; a maximum needs a minimum); the dock's
        spin box spans it.
    exclusive_maximum
        ``maximum`` itself is not allowed (e.g. a decay below 1); the dock's
        box stops one step of its last decimal below it.
    step, decimals
        The dock's spin-box step; ``decimals > 0`` gives a floating-point box.
    special
        Text for None (e.g. ``'auto'``), which the dock shows at ``minimum``;
        values are then above ``minimum``.
    special_on_cli
        The command line takes ``minimum`` for None too (``--time-budget 0``);
        otherwise it refuses it like any value out of range.
    choices
        Allowed strings: the dock's drop-down, the option's choices.
    advanced
        The dock shows it under "Advanced settings".
    flag
        The command-line option, when not ``--`` and the field name with
        dashes (``batch_size``: ``--batch-size``).
    """

    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: bool = False
    step: float = 1
    decimals: int = 0
    special: str | None = None
    special_on_cli: bool = False
    choices: tuple[str, ...] = ()
    advanced: bool = False
    flag: str | None = None

    def field(
        self,
        default: Any = dataclasses.MISSING,
        *,
        default_factory: Any = dataclasses.MISSING,
    ) -> Any:
        """A dataclass field with this setting in its metadata."""
        return dataclasses.field(
            default=default, default_factory=default_factory, metadata={KEY: self}
        )

    def check(self, value: float, name: str) -> None:
        """Raise :class:`XrmError` naming ``name`` if ``value`` is out of range
        (a value, not None: with a ``special``, above ``minimum``)."""
        lo, hi = self.minimum, self.maximum
        if lo is not None and self.special is not None and value <= lo:
            problem = (
                f"at least {lo + 1:g}" if isinstance(value, int) else f"above {lo:g}"
            )
        elif lo is not None and value < lo:
            problem = f"at least {lo:g}"
        elif hi is not None and self.exclusive_maximum and value >= hi:
            problem = f"in [{lo:g}, {hi:g})"
        elif hi is not None and value > hi:
            problem = f"between {lo:g} and {hi:g}"
        else:
            return
        raise XrmError(f"{name} must be {problem}, got {value}.")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    **spec: Any,
) -> Any:
    """A dataclass field described by ``Setting(**spec)``: label, help, range...

    ``default`` and ``default_factory`` are those of :func:`dataclasses.field`.
    """
    return Setting(**spec).field(default, default_factory=default_factory)


def settings(config_cls: type) -> dict[str, Setting]:
    """Name → :class:`Setting` of each described field of ``config_cls``, in
    field order; the described fields of a nested configuration follow it,
    named ``outer.inner``."""
    described: dict[str, Setting] = {}
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if KEY in f.metadata:
            described[f.name] = f.metadata[KEY]
        if dataclasses.is_dataclass(hints[f.name]):
            for inner, spec in settings(hints[f.name]).items():
                described[f"{f.name}.{inner}"] = spec
    return described


def setting_value(config: Any, name: str) -> Any:
    """The value of setting ``name`` (dotted for a nested one) of ``config``."""
    for part in name.split("."):
        config = getattr(config, part)
    return config


def setting_type(config_cls: type, name: str) -> Any:
    """The type hint of setting ``name`` (dotted for a nested one) of ``config_cls``."""
    hint: Any = config_cls
    for part in name.split("."):
        hint = typing.get_type_hints(hint)[part]
    return hint


def with_settings(config: Any, values: Mapping[str, Any]) -> Any:
    """``config`` with the settings ``values`` (names dotted for nested ones)."""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        outer, dot, inner = name.partition(".")
        if dot:
            nested.setdefault(outer, {})[inner] = value
        else:
            changes[name] = value
    for outer, inner_values in nested.items():
        inner_config = changes.get(outer, getattr(config, outer))
        changes[outer] = with_settings(inner_config, inner_values)
    return dataclasses.replace(config, **changes)
