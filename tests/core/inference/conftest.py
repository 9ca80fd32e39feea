"""Fixtures of the inference tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def segmenter(untrained_segmenter, tiny_model_config):
    """An untrained tiny :class:`Segmenter` with varied classes."""
    return untrained_segmenter(tiny_model_config)
