from mlcls.losses.bce import BCEWithLogitsLoss

__all__ = ["BCEWithLogitsLoss"]
