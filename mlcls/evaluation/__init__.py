from mlcls.evaluation.functional import average_precision, compute_metrics, threshold_record, tune_thresholds
from mlcls.evaluation.metrics import MultiLabelMetric

__all__ = ["compute_metrics", "threshold_record", "average_precision", "tune_thresholds", "MultiLabelMetric"]
