"""``al_suite.py --report [--plot]`` on kept suite files: the tables and the
learning-curve figure come out of the files as they are stored."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
KEPT = BENCHMARKS / "results" / "suite-grey-all"


@pytest.fixture
def suite_report(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import suite_report

    yield suite_report
    for name in ("suite_report", "suite_plot", "bench_active_learning"):
        sys.modules.pop(name, None)


def test_report_prints_the_tables_and_draws_the_curves(
    tmp_path, capsys, suite_report
) -> None:
    for name in ("many-voids_zyx_s0.json", "rare-voids_zyx_s0.json"):
        shutil.copy(KEPT / name, tmp_path / name)
    png = tmp_path / "curves.png"
    suite_report.report(tmp_path, lambda pool: 0.05, (8, 12), png)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| many-voids_zyx |")]
    assert len(rows) >= 4  # four strategies, then the paired rows
    assert "| rareness-discovery-spread | 1 | 0.829 / 0.888 / 0.613 |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Learning curves along z, y, x: {png}" in out


def test_runs_along_z_and_along_z_y_x_get_a_figure_each(
    tmp_path, capsys, suite_report
) -> None:
    shutil.copy(KEPT / "many-voids_zyx_s0.json", tmp_path / "many-voids_zyx_s0.json")
    shutil.copy(KEPT / "many-voids_zyx_s0.json", tmp_path / "many-voids_s0.json")
    suite_report.report(tmp_path, lambda pool: 0.05, (8, 12), tmp_path / "c.png")
    out = capsys.readouterr().out
    for axes, name in (("z", "c_z.png"), ("z, y, x", "c_zyx.png")):
        assert f"Learning curves along {axes}: {tmp_path / name}" in out
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "c.png").exists()


def test_the_report_pairs_each_strategy_along_z_y_x_with_itself_along_z(
    tmp_path, capsys, suite_report
) -> None:
    today = BENCHMARKS / "results" / "suite"
    for pool in ("many-voids", "rare-voids"):
        for name in (f"{pool}_s0.json", f"{pool}_zyx_s0.json"):
            shutil.copy(today / name, tmp_path / name)
    suite_report.report(tmp_path, lambda pool: 0.05, (8, 12))
    out = capsys.readouterr().out.split("## Along z, y, x against along z")[1]
    assert "pairs that ran both (2 pools)" in out
    # Random at 12 slices: many-voids 0.575 → 0.909, rare-voids 0.527 → 0.866.
    row = next(line for line in out.splitlines() if line.startswith("| random |"))
    assert row.split(" | ")[2].startswith("+0.337 ± ")
    assert row.endswith("(2/0/0) |")


def test_the_report_keeps_the_strategies_asked_for_in_their_order(
    tmp_path, capsys, suite_report
) -> None:
    name = "many-voids_zyx_s0.json"
    shutil.copy(BENCHMARKS / "results" / "suite" / name, tmp_path / name)
    suite_report.report(
        tmp_path, lambda pool: 0.05, (8, 12), strategies=["random", "rareness"]
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| many-voids_zyx |")]
    assert [row.split(" | ")[1] for row in rows] == ["random", "rareness", "rareness"]
    assert "random − strategy over the pool-seed pairs" in out
    assert "| entropy |" not in out and "rareness-discovery" not in out


def test_the_report_names_a_seed_whose_strategies_started_apart(
    tmp_path, capsys, suite_report
) -> None:
    # Thick-dies seed 1 as first run: its share on another machine (bfloat16),
    # the other strategies here (float32), from other first slices.
    name = "thick-dies_zyx_s1.json"
    shutil.copy(BENCHMARKS / "results" / "suite-other-machine" / name, tmp_path / name)
    suite_report.report(tmp_path, lambda pool: 0.05, (8, 12))
    out = capsys.readouterr().out
    assert "Not paired" in out
    assert "thick-dies_zyx seed 1 (x:28, z:76 against x:8, z:69)" in out
    shutil.copy(BENCHMARKS / "results" / "suite" / name, tmp_path / name)
    suite_report.report(tmp_path, lambda pool: 0.05, (8, 12))
    assert "Not paired" not in capsys.readouterr().out
