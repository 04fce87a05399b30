"""Our own clean-room re-implementations of third-party networks (no third-party code).

- :mod:`atgan_plugin.vendored.stylegan2_ada`: the StyleGAN2-ADA generator, loadable from NVIDIA's
  PyTorch pickles without executing them.
"""
