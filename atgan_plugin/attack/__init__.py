"""The attack a user imports: :class:`ATGANAttack`, its Foolbox and AdverTorch faces, and its fit.

- :mod:`.atgan`: ``ATGANAttack``, generation with the per-example shrink; :mod:`.fit_store`: its cache
  of fitted generators and their files;
- :mod:`.config` (``TransferConfig`` and its presets) and :mod:`.attack_options` (``AttackOptions``): what the
  attack computes and how it runs;
- :mod:`.fit` (with :mod:`.objective`, :mod:`.stacked`, :mod:`.reference_pool`, :mod:`.schedule`): the
  fine-tuning of G_attack, one target or many in one loop;
- :mod:`.losses`, :mod:`.guards`, :mod:`.shrink`, :mod:`.inversion`, :mod:`.precision`, :mod:`.compiled`:
  its parts;
- :mod:`.generator_attack` (with :mod:`.attacked_model`): the Foolbox and AdverTorch interfaces;
  :mod:`.generation`, :mod:`.distributed`: scale.

``ATGANAttack`` is imported on first use (PEP 562), so that ``atgan_plugin.attack.config`` can be read
without Foolbox and AdverTorch, and without a cycle through the classifier registry.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ATGANAttack"]


def __getattr__(name: str) -> Any:
    if name == "ATGANAttack":
        from atgan_plugin.attack.atgan import ATGANAttack

        return ATGANAttack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
