"""README for the package index: images resolve and a newcomer installs the CPU
build of torch before the package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_images_are_files_in_the_repository() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images
    for image in images:
        assert "://" not in image, image
        assert (ROOT / image).is_file(), image


def test_quick_start_installs_cpu_torch_before_the_package() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick_start, flags=re.DOTALL)
    torch_step = next(i for i, c in enumerate(commands) if "whl/cpu" in c)
    install = next(i for i, c in enumerate(commands) if '".[all]"' in c)
    assert torch_step < install
    test_block = quick_start.split("<!-- test-command -->", 1)[1]
    assert test_block.split("<!-- /test-command -->")[0].count("```") == 2
