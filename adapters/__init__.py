"""Generator adapters: every conditional GAN behind one :class:`ConditionalGenerator` protocol.

Installed as ``atgan_plugin.adapters``. ``load_generator(path)`` reads any checkpoint format a
registered adapter accepts and returns an adapter in eval mode: our AC-WGAN_GP safetensors
checkpoints, and StyleGAN2-ADA as NVIDIA's pickles (read safely) or our safetensors.
"""

from atgan_plugin.adapters.acwgan_gp import ACWGANGPGenerator
from atgan_plugin.adapters.protocol import ConditionalGenerator, SharedGuards, check_generator
from atgan_plugin.adapters.registry import (
    GeneratorFormat,
    load_generator,
    register_generator_format,
    registered_formats,
)
from atgan_plugin.adapters.stylegan2_ada import StyleGAN2ADAGenerator

__all__ = [
    "ACWGANGPGenerator",
    "ConditionalGenerator",
    "GeneratorFormat",
    "SharedGuards",
    "StyleGAN2ADAGenerator",
    "check_generator",
    "load_generator",
    "register_generator_format",
    "registered_formats",
]
