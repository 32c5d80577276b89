"""The training loop of the learned methods (moved from training.py, split next)."""
