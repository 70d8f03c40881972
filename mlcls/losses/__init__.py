from mlcls.losses.asymmetric import AsymmetricLoss
from mlcls.losses.balanced_bce import BalancedBCELoss
from mlcls.losses.bce import BCEWithLogitsLoss
from mlcls.losses.focal import FocalLoss

__all__ = ["BCEWithLogitsLoss", "BalancedBCELoss", "FocalLoss", "AsymmetricLoss"]
