from mlcls.models.heads.linear import MultiLabelClsHead, MultiLabelLinearClsHead, MultiLabelMLPHead

__all__ = ["MultiLabelClsHead", "MultiLabelLinearClsHead", "MultiLabelMLPHead"]
