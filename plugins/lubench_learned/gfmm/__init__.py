"""The GFMM graph in PyTorch (moved from gfmm.py; split by layer in the next commit)."""
