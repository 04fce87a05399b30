"""What the ``atgan`` commands do, as plain functions.

Each module takes loaded networks and plain values (no click) and writes a run folder's files; the
CLI (:mod:`atgan_plugin.cli`) only parses options, calls these and prints. ``networks`` loads what a
command runs on, the shipped checkpoints standing in for paths not given.
"""
