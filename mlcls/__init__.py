"""mlcls: multi-label image classification for imbalanced, non-exclusive labels."""

__version__ = "0.1.0"
