"""``python -m atgan_plugin.cli`` (and ``torchrun ... -m atgan_plugin.cli``) runs the ``atgan`` command."""

from atgan_plugin.cli import main

main()
