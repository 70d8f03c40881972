"""Model parts and evaluators declare what mlcls uses of them (mlcls.models.protocols, Evaluator):
a plugin that lacks a member is told at build time, and bag models are known by a declared property."""

import pytest
import torch
import torch.nn as nn

from mlcls.apis.inference import bag_views
from mlcls.apis.tta import TTAModel
from mlcls.engine.trainer import Trainer
from mlcls.errors import BuildError
from mlcls.evaluation.metrics import Evaluator, build_evaluator
from mlcls.models import build_model
from mlcls.models.protocols import Backbone, Classifier, Head, Neck
from mlcls.registry import METRICS, MODELS

BACKBONE = {"type": "ResNet", "depth": 18}
HEAD = {"type": "MultiLabelLinearClsHead"}


class _BareHead(nn.Module):  # logits, loss and predict, but no declarations
    def __init__(self, num_classes, in_channels, label_stats=None):
        super().__init__()
        self.num_classes, self.fc = num_classes, nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.fc(x)

    def loss(self, feats, targets):
        return {"loss": self(feats).mean()}

    def predict(self, feats):
        return self(feats).sigmoid()


class _MeanOfBag(nn.Module):  # a user's own bag pooling: declares it reads bags
    reads_bags = True

    def __init__(self, in_channels=None):
        super().__init__()

    def forward(self, x, sizes=None):
        x = x.mean(dim=(2, 3)) if x.dim() == 4 else x
        sizes = torch.ones(x.shape[0], dtype=torch.long) if sizes is None else sizes
        return torch.stack([p.mean(0) for p in x.split(sizes.tolist())])


@pytest.fixture(autouse=True)
def plugins():
    MODELS.register_module("_BareHead", _BareHead)
    MODELS.register_module("_MeanOfBag", _MeanOfBag)
    yield
    MODELS._obj_map.pop("_BareHead", None)
    MODELS._obj_map.pop("_MeanOfBag", None)


def test_built_in_parts_offer_their_protocols():
    model = build_model({"type": "ImageClassifier", "backbone": BACKBONE, "head": HEAD}, num_classes=3)
    assert isinstance(model.backbone, Backbone) and isinstance(model.head, Head) and isinstance(model, Classifier)
    assert isinstance(model.neck, Neck) and isinstance(build_evaluator(None), Evaluator)
    for head in ("CSRAClsHead", "MLDecoderHead"):
        m = build_model({"type": "ImageClassifier", "backbone": BACKBONE, "head": {"type": head}}, num_classes=3)
        assert m.head.spatial_input and isinstance(m.neck, nn.Identity) and m.bag_views is None


def test_a_plugin_part_that_lacks_a_member_is_one_error_naming_it(tmp_path):
    with pytest.raises(BuildError, match=r"model.head: _BareHead lacks spatial_input, resolved_config \(.*mlcls.models.protocols.Head\)"):
        build_model({"type": "ImageClassifier", "backbone": BACKBONE, "head": {"type": "_BareHead"}}, num_classes=3)

    bare = type("Bare", (), {"thr": 0.5, "topk": None, "sharded": False, "reset": lambda self: None})
    METRICS.register_module("_Bare", bare)
    try:
        with pytest.raises(BuildError, match=r"evaluator: Bare lacks process, gathered, evaluate, compute, metric_names"):
            build_evaluator({"type": "_Bare"})
        with pytest.raises(BuildError, match=r"evaluator: Bare lacks process"):
            Trainer(nn.Linear(2, 2), None, [], 1, evaluator=bare(), work_dir=str(tmp_path))
    finally:
        METRICS._obj_map.pop("_Bare", None)


def test_a_model_of_bags_is_known_by_its_neck_not_by_a_class_name():
    mine = build_model({"type": "ImageClassifier", "backbone": BACKBONE, "neck": {"type": "_MeanOfBag"}, "head": HEAD}, num_classes=2)
    assert mine.bag_views == [""] and bag_views(TTAModel(mine, "flip")) == [""]  # through test-time augmentation too
    plain = build_model(
        {"type": "ImageClassifier", "backbone": BACKBONE, "neck": {"type": "GlobalAveragePooling"}, "head": HEAD}, num_classes=2
    )
    assert plain.bag_views is None
    views = {"type": "ImageClassifier", "views": ["sag", "cor"], "backbone": BACKBONE, "head": HEAD}
    assert build_model({**views, "neck": {"type": "InstancePooling"}}, num_classes=2).bag_views == ["sag", "cor"]
    with pytest.raises(Exception, match=r"model.views: the neck GlobalAveragePooling does not pool bags"):
        build_model({**views, "neck": {"type": "GlobalAveragePooling"}}, num_classes=2)
