"""Which of a project's recorded models can still be used.

A checkpoint may go missing or be damaged after it was recorded; the session
then falls back to an earlier cycle's model and says why, once.
"""

from __future__ import annotations

from pathlib import Path

from napari_xrm_al.core.session.schema import CycleRecord
from napari_xrm_al.errors import InputError


class CheckpointChecks:
    """Whether checkpoints load, checked once per version of each file.

    The training settings a loaded checkpoint records are kept with the
    verdict, so that asking for them does not load the file again.
    """

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int, str | None, dict | None]] = {}

    def problem(self, path: Path) -> str | None:
        """Why the segmenter checkpoint at ``path`` cannot be used, or None."""
        # Imported here so that opening a session does not import torch.
        from napari_xrm_al.core.model.checkpoint import load_checkpoint

        try:
            stat = path.stat()
        except OSError:
            return f"{path}: does not exist"
        seen = self._seen.get(path)
        if seen is not None and seen[:2] == (stat.st_mtime_ns, stat.st_size):
            return seen[2]
        try:
            problem, config = None, load_checkpoint(path, kind="segmenter").settings
        except InputError as exc:
            problem, config = str(exc), None
        self._seen[path] = (stat.st_mtime_ns, stat.st_size, problem, config)
        return problem

    def settings(self, path: Path) -> dict | None:
        """The training settings the checkpoint at ``path`` records (None:
        it records none or cannot be used)."""
        if self.problem(path) is not None:
            return None
        return self._seen[path][3]


def skipped_models(
    skipped: list[tuple[CycleRecord, str]], used: CycleRecord | None
) -> list[str]:
    """Messages for the cycles whose models were ``skipped`` (with why) for
    ``used``'s (None: no usable model is left)."""
    instead = (
        f"the model of cycle {used.cycle} ({used.model}) is used instead"
        if used is not None
        else "no trained model is left; train again"
    )
    return [
        f"The model of cycle {record.cycle} is unusable ({problem}); {instead}."
        for record, problem in skipped
    ]
