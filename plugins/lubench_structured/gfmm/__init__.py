"""The GFMM block structure (filled by the move out of ``lubench_compressed``)."""
