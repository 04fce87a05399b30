"""The attack a user imports: :class:`ATGANAttack`, its Foolbox and AdverTorch faces, and its fit.

- :mod:`.atgan`: ``ATGANAttack``, generation with the per-example shrink; :mod:`.fit_store`: its cache
  of fitted generators and their files;
- :mod:`.transfer` and :mod:`.joint_fit`: the fine-tuning of G_attack (one target, or all together);
- :mod:`.losses`, :mod:`.guards`, :mod:`.shrink`, :mod:`.inversion`, :mod:`.precision`, :mod:`.compiled`:
  its parts;
- :mod:`.generator_attack` (with :mod:`.attacked_model`): the Foolbox and AdverTorch interfaces;
  :mod:`.generation`, :mod:`.distributed`: scale.
"""

from atgan_plugin.attack.atgan import ATGANAttack

__all__ = ["ATGANAttack"]
