"""Training: config, optimizer and schedule, the loop, checkpoints, events and progress.

Kept free of heavy imports so `alm.runs` and the CLI can use the torch-free parts (`events`, `rundir`) cheaply.
"""
