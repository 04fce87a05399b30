"""atgan-plugin: AT-GAN, the generative non-constrained adversarial attack, for Foolbox and AdverTorch.

Usage::

    from atgan_plugin import ATGANAttack, load_generator

    G = load_generator("generator.safetensors")             # or NVIDIA's StyleGAN2-ADA "cifar10.pkl"
    attack = ATGANAttack(generator=G)                       # Foolbox face
    adversary = ATGANAttack(model, generator=G)             # AdverTorch face
    baseline = SongAttack(model, generator=G)               # Song et al.'s latent search, same faces
"""

from atgan_plugin.adapters import ACWGANGPGenerator, ConditionalGenerator, StyleGAN2ADAGenerator, load_generator
from atgan_plugin.attack.atgan import ATGANAttack, AttackOptions
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.paper.song import SongAttack

__version__ = "0.1.0"

__all__ = [
    "ACWGANGPGenerator",
    "ATGANAttack",
    "AttackOptions",
    "ConditionalGenerator",
    "SongAttack",
    "StyleGAN2ADAGenerator",
    "TransferConfig",
    "fit_attack_generator",
    "load_generator",
]
