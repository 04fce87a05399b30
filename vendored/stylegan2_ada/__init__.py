"""Our own clean-room StyleGAN2-ADA generator, checkpoint-compatible with NVIDIA's PyTorch pickles.

See README.md in this folder for what it is (and is not) compatible with. It holds no
third-party code.
"""

from atgan_plugin.vendored.stylegan2_ada.networks import (
    NOISE_MODES,
    PRECISIONS,
    Generator,
    MappingNetwork,
    SynthesisNetwork,
)

__all__ = ["NOISE_MODES", "PRECISIONS", "Generator", "MappingNetwork", "SynthesisNetwork"]
