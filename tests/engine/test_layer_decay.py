"""Layer-wise lr decay (BEiT/MAE recipe), read back from the optimizer's parameter groups."""

from __future__ import annotations

import pytest

from mlcls.engine import build_optimizer
from mlcls.errors import ConfigError
from mlcls.models import build_model


def lr_of(optimizer, model) -> dict[str, float]:
    by_id = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters() if id(p) in by_id}


def test_resnet_stages_decay_towards_the_stem():
    model = build_model(
        {"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18}, "head": {"type": "MultiLabelLinearClsHead"}}, num_classes=4
    )
    opt = build_optimizer({"type": "AdamW", "lr": 1.0, "paramwise_cfg": {"layer_decay_rate": 0.5}}, model)
    lr = lr_of(opt, model)
    assert lr["head.fc.weight"] == 1.0
    assert lr["backbone.layer4.0.conv1.weight"] == 0.5 and lr["backbone.layer1.1.bn2.bias"] == 0.5**4
    assert lr["backbone.stem.0.weight"] == 0.5**5 and lr["backbone.stem.1.weight"] == 0.5**5


def test_vgg_blocks_and_custom_keys_multiply():
    model = build_model(
        {"type": "ImageClassifier", "backbone": {"type": "VGG", "depth": 11}, "head": {"type": "MultiLabelLinearClsHead"}}, num_classes=4
    )
    cfg = {"type": "SGD", "lr": 1.0, "paramwise_cfg": {"layer_decay_rate": 0.8, "custom_keys": {"head": {"lr_mult": 10}}}}
    lr = lr_of(build_optimizer(cfg, model), model)
    assert lr["head.fc.weight"] == pytest.approx(10.0)
    assert lr["backbone.features.4.0.weight"] == pytest.approx(0.8) and lr["backbone.features.0.0.weight"] == pytest.approx(0.8**5)


def test_timm_vit_blocks_decay_from_the_head_to_the_patch_embedding():
    model = build_model(
        {"type": "ImageClassifier", "backbone": {"type": "TimmBackbone", "model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8},
         "head": {"type": "MultiLabelLinearClsHead"}},
        num_classes=4,
    )  # fmt: skip
    lr = lr_of(build_optimizer({"type": "AdamW", "lr": 1.0, "paramwise_cfg": {"layer_decay_rate": 0.75}}, model), model)
    depth = 12 + 1  # 12 blocks at 1..12, head (and the final norm) at 13
    assert lr["head.fc.weight"] == 1.0 and lr["backbone.model.norm.weight"] == 1.0
    assert lr["backbone.model.blocks.11.mlp.fc1.weight"] == pytest.approx(0.75 ** (depth - 12))
    assert lr["backbone.model.blocks.0.attn.qkv.weight"] == pytest.approx(0.75 ** (depth - 1))
    assert lr["backbone.model.patch_embed.proj.weight"] == pytest.approx(0.75**depth) == lr["backbone.model.cls_token"]
    with pytest.raises(ConfigError, match="layer_decay_rate must be in"):
        build_optimizer({"type": "AdamW", "lr": 1.0, "paramwise_cfg": {"layer_decay_rate": 1.5}}, model)
