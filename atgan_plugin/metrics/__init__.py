"""Measures of an attack's results, in one vocabulary for ``atgan evaluate``, ``atgan demo`` and ``atgan reproduce``.

- **success** (fooled): the target model misclassifies the adversarial image (untargeted) or gives the target;
- **realistic success**: success *and* the oracle, an independent classifier, still gives the source class;
  **rejected**: success the oracle does not accept (never counted as realistic);
- **oracle agreement**: how often the oracle gives the source class, on the adversarial images and on their
  references; its **ratio** (adversarial over reference) is 1 when the attack kept the images' realism;
- **distances**: mean ℓ2 and ℓ∞ of the change from the reference, in [0, 1] pixel units;
- **Fréchet distance** to the real test images in a robust classifier's features, and **added edges**
  (the change's total variation over the reference's): :mod:`atgan_plugin.metrics.realism`.

Modules: :mod:`.counting` (predictions and counts, batch by batch), :mod:`.records` (the rates each report
writes), :mod:`.realism` (Fréchet distance, added edges), :mod:`.machine` (machine description, timing).
"""

from atgan_plugin.metrics.counting import Tally, predict_classes
from atgan_plugin.metrics.machine import best_time, machine, machine_description, machine_lines, timed
from atgan_plugin.metrics.realism import PenultimateFeatures, RobustFrechetDistance, added_edges
from atgan_plugin.metrics.records import AttackMetrics, SettingMetrics

__all__ = [
    "AttackMetrics",
    "PenultimateFeatures",
    "RobustFrechetDistance",
    "SettingMetrics",
    "Tally",
    "added_edges",
    "best_time",
    "machine",
    "machine_description",
    "machine_lines",
    "predict_classes",
    "timed",
]
