"""hfmatrix: a test matrix for HuggingFace models across hardware backends."""

__version__ = "0.1.0"
