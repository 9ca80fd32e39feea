"""Every benchmark script still imports: benchmarks run for hours, so an import
broken by a move in the package should fail here, not at the start of a run."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_benchmark_imports(script: str, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # benchmarks import each other
    module = importlib.import_module(script)
    assert module.__name__ == script
    sys.modules.pop(script, None)
