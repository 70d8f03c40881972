from mlcls.models.heads.linear import MultiLabelClsHead, MultiLabelLinearClsHead, MultiLabelMLPHead
from mlcls.models.heads.powerset import LabelPowersetHead

__all__ = ["LabelPowersetHead", "MultiLabelClsHead", "MultiLabelLinearClsHead", "MultiLabelMLPHead"]
