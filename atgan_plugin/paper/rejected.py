"""The examples the oracle rejected: successes whose source class the oracle no longer gives.

They are the attack's failures that a reader should see, not only count. ``atgan evaluate`` and ``atgan demo``
keep the first :attr:`RejectedExamples.limit` of their first setting (the untargeted one) while they measure it,
write ``rejected.png`` (G_orig's images in the top row, AT-GAN's below, one column per example) and record in
report.json (``rejected_examples``) what each column is, so that report.html can name the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image

from atgan_plugin.metrics.counting import Outcome

__all__ = ["REJECTED_FILE", "RejectedExamples"]

REJECTED_FILE = "rejected.png"


@dataclass
class RejectedExamples:
    """Collects up to ``limit`` rejected examples, batch by batch, in the order they were drawn."""

    limit: int = 10
    target: int | None = None  # the setting they come from (None: untargeted)
    count: int = 0  # every rejected example seen, kept or not
    references: list[torch.Tensor] = field(default_factory=list)  # G_orig's images, each (C, H, W), on CPU
    adversarial: list[torch.Tensor] = field(default_factory=list)  # AT-GAN's, the same (z, y_s)
    sources: list[int] = field(default_factory=list)
    oracle_classes: list[int] = field(default_factory=list)  # what the oracle sees in AT-GAN's image instead

    def add(self, reference: torch.Tensor, adversarial: torch.Tensor, sources: torch.Tensor, outcome: Outcome) -> None:
        """One batch: images ``(N, C, H, W)`` in [0, 1], ``sources`` ``(N,)``, and what the tally found."""
        self.count += int(outcome.rejected.sum().item())
        room = self.limit - len(self.sources)
        if room <= 0:
            return
        kept = outcome.rejected.nonzero().flatten()[:room]
        self.references += list(reference[kept].detach().cpu())
        self.adversarial += list(adversarial[kept].detach().cpu())
        self.sources += [int(k) for k in sources[kept].tolist()]
        self.oracle_classes += [int(k) for k in outcome.oracle_classes[kept].tolist()]

    def save(self, folder: str | Path) -> Path | None:
        """Writes ``folder/rejected.png`` (two rows: G_orig, AT-GAN) and returns its path; None when none were
        rejected (no file is written)."""
        if not self.sources:
            return None
        path = Path(folder) / REJECTED_FILE
        rows = torch.cat([torch.stack(self.references), torch.stack(self.adversarial)])  # (2k, C, H, W)
        save_image(make_grid(rows, nrow=len(self.sources), padding=2, pad_value=1.0), path)
        return path

    def record(self, file: str | None) -> dict[str, Any]:
        """What report.json holds of them: the image's name (None when none were rejected), the setting,
        how many were rejected in all, and each column's source class and oracle's class, left to right."""
        return {
            "file": file,
            "target": self.target,
            "count": self.count,
            "sources": list(self.sources),
            "oracle_classes": list(self.oracle_classes),
        }
