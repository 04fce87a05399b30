"""The paper's tooling: targets and defenses it trains, the baselines it compares with, GAN training,
the evaluation and ``atgan reproduce``. Nothing in :mod:`atgan_plugin.attack` depends on it."""
