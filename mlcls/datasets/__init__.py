from mlcls.datasets.base import MultiLabelDataset, load_image, read_class_list
from mlcls.datasets.builder import build_dataloader, build_dataset
from mlcls.datasets.csv_dataset import CSVDataset
from mlcls.datasets.samplers import DefaultSampler
from mlcls.datasets.transforms import build_pipeline

__all__ = [
    "MultiLabelDataset",
    "CSVDataset",
    "DefaultSampler",
    "build_dataloader",
    "build_dataset",
    "build_pipeline",
    "load_image",
    "read_class_list",
]
