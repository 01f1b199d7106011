"""Training: the run config and its presets, the loop and its components (step, validation, samples,
checkpointer, reporting), optimizer and schedule, checkpoints and stop signals.

Kept free of heavy imports: `alm.train.config` and `alm.train.run_config` load without torch.
"""
