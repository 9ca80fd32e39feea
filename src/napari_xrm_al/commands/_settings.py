"""Command-line options built from the settings of a config dataclass.

Each option comes from its field's :class:`~napari_xrm_al.core.settings.Setting`,
as the dock's form does: ``--`` and the field name with dashes (or the
setting's ``flag``), the field's type, the choices, and the help with the
default. An option left out is None and keeps the config's default;
:func:`setting_overrides` checks the range of those given.
"""

from __future__ import annotations

import argparse
import re
import typing
from collections.abc import Sequence
from typing import Any

from napari_xrm_al.core.settings import (
    Setting,
    setting_type,
    setting_value,
    settings,
)

# Sphinx roles and literals in help texts, to show as plain words.
_ROLE = re.compile(r":\w+:`~?(?:[\w.]*\.)?(\w+)`")
_LITERAL = re.compile(r"``(.*?)``")


def flag(name: str, spec: Setting) -> str:
    """The option of setting ``name``: ``spec.flag`` or ``--`` and the name
    with dashes (``augment.noise_std``: ``--augment-noise-std``)."""
    return spec.flag or "--" + re.sub(r"[._]", "-", name)


def add_setting_options(
    parser: argparse.ArgumentParser, config_cls: type, names: Sequence[str]
) -> None:
    """An option for each field ``names`` of ``config_cls`` (dest: the field name)."""
    described = settings(config_cls)
    defaults = config_cls()
    for name in names:
        spec = described[name]
        option = flag(name, spec)
        parser.add_argument(
            option,
            dest=name,
            type=None if spec.choices else _scalar(setting_type(config_cls, name)),
            choices=spec.choices or None,
            metavar=None if spec.choices else option[2:].upper().replace("-", "_"),
            help=_help(spec, setting_value(defaults, name)),
        )


def setting_overrides(
    args: argparse.Namespace, config_cls: type, names: Sequence[str]
) -> dict[str, Any]:
    """The settings among ``names`` given on the command line, for
    :func:`~napari_xrm_al.core.settings.with_settings`; :class:`~napari_xrm_al.errors.XrmError` naming
    the option for a value out of range."""
    described = settings(config_cls)
    given: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name)
        if value is None:
            continue
        spec = described[name]
        if spec.special_on_cli and value == spec.minimum:
            value = None
        else:
            spec.check(value, flag(name, spec))
        given[name] = value
    return given


def _scalar(hint: Any) -> type:
    """``int`` of ``int`` or ``int | None``."""
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
    return kinds[0] if kinds else hint


def _help(spec: Setting, default: Any) -> str:
    """The setting's help as an option's: plain text, lower case like the other
    options' (not an initialism such as 'NT-Xent'), then the default."""
    text = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", spec.help)).rstrip(".")
    if text[1:2].islower():
        text = text[0].lower() + text[1:]
    if default is None:
        shown = spec.special
    else:
        shown = f"{default:g}" if isinstance(default, float) else default
    special = f"{spec.minimum:g} = {spec.special}; " if spec.special_on_cli else ""
    return f"{text} ({special}default: {shown})".replace("%", "%%")
