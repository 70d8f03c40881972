from mlcls.datasets.base import IndexedDataset, MultiLabelDataset
from mlcls.datasets.batch_augments import BatchAugments, CutMix, Mixup
from mlcls.datasets.builder import build_dataloader, build_dataset
from mlcls.datasets.class_balanced import ClassBalancedDataset
from mlcls.datasets.coco import COCODataset
from mlcls.datasets.csv_dataset import CSVDataset
from mlcls.datasets.image_io import load_image
from mlcls.datasets.labels import read_class_list
from mlcls.datasets.list_datasets import MMClsJSONDataset, TXTListDataset
from mlcls.datasets.mrnet import MRNetDataset
from mlcls.datasets.openimages import OpenImagesDataset
from mlcls.datasets.samplers import DefaultSampler, RepeatFactorSampler, repeat_factors
from mlcls.datasets.shards import WebDatasetShards
from mlcls.datasets.transforms import build_pipeline
from mlcls.datasets.voc import VOCDataset

__all__ = [
    "BatchAugments",
    "CutMix",
    "Mixup",
    "MultiLabelDataset",
    "IndexedDataset",
    "CSVDataset",
    "TXTListDataset",
    "MMClsJSONDataset",
    "VOCDataset",
    "COCODataset",
    "OpenImagesDataset",
    "MRNetDataset",
    "WebDatasetShards",
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
