"""``torch.compile`` wrappers made once per module and kept, for ``ATGANAttack(compile=True)``.

our choice: generation (G_attack, G_orig and the model when it is a torch module) may run compiled
for GPU throughput; the fit never is. Plain functions (a Foolbox model's forward) are not compiled.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from atgan_plugin.attack.attacked_model import CheckedClassifier

__all__ = ["CompiledModules"]


class CompiledModules:
    """Each torch module's ``torch.compile`` wrapper, made on first use; with ``enabled=False``
    (or for anything that is not a module) the function itself."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._wrappers: dict[int, tuple[nn.Module, Any]] = {}  # id(module) -> (module, its wrapper)

    def __call__(self, function: Any) -> Any:
        if isinstance(function, CheckedClassifier):  # the user's model, behind its checks: compile the model
            return function.with_inner(self(function.inner)) if self.enabled else function
        if not self.enabled or not isinstance(function, nn.Module):
            return function
        entry = self._wrappers.get(id(function))
        if entry is None or entry[0] is not function:  # a new module under a reused id: compile it afresh
            entry = (function, torch.compile(function))
            self._wrappers[id(function)] = entry
        return entry[1]
