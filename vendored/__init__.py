"""Our own clean-room re-implementations of third-party networks (StyleGAN2-ADA comes in a later release)."""
