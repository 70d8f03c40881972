from mlcls.datasets.base import MultiLabelDataset, load_image, read_class_list
from mlcls.datasets.builder import build_dataloader, build_dataset
from mlcls.datasets.class_balanced import ClassBalancedDataset
from mlcls.datasets.csv_dataset import CSVDataset
from mlcls.datasets.samplers import DefaultSampler, RepeatFactorSampler, repeat_factors
from mlcls.datasets.transforms import build_pipeline

__all__ = [
    "MultiLabelDataset",
    "CSVDataset",
    "DefaultSampler",
    "RepeatFactorSampler",
    "ClassBalancedDataset",
    "repeat_factors",
    "build_dataloader",
    "build_dataset",
    "build_pipeline",
    "load_image",
    "read_class_list",
]
