from mlcls.models.heads.csra import CSRAClsHead
from mlcls.models.heads.linear import MultiLabelClsHead, MultiLabelLinearClsHead, MultiLabelMLPHead
from mlcls.models.heads.ml_decoder import MLDecoderHead
from mlcls.models.heads.powerset import LabelPowersetHead

__all__ = ["CSRAClsHead", "LabelPowersetHead", "MLDecoderHead", "MultiLabelClsHead", "MultiLabelLinearClsHead", "MultiLabelMLPHead"]
