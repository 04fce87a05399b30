"""AC-WGAN_GP, the default original generator: its networks (:mod:`.network`) and its adapter (:mod:`.adapter`)."""

from atgan_plugin.adapters.acwgan_gp.adapter import ACWGANGPGenerator

__all__ = ["ACWGANGPGenerator"]
