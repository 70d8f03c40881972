from mlcls.losses.asymmetric import AsymmetricLoss
from mlcls.losses.balanced_bce import BalancedBCELoss
from mlcls.losses.bce import BCEWithLogitsLoss
from mlcls.losses.focal import FocalLoss
from mlcls.losses.hill import HillLoss
from mlcls.losses.large_loss import LargeLoss
from mlcls.losses.selective import SelectiveLoss
from mlcls.losses.splc import SPLCLoss
from mlcls.losses.utils import EpochAware, SampleIndexed, TrainingState

__all__ = [
    "BCEWithLogitsLoss", "BalancedBCELoss", "FocalLoss", "AsymmetricLoss", "HillLoss", "LargeLoss", "SelectiveLoss", "SPLCLoss",
    "EpochAware", "SampleIndexed", "TrainingState",
]  # fmt: skip
