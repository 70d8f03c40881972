import pytest
import torch

from mlcls.errors import BuildError, CheckpointError
from mlcls.models import build_model
from mlcls.registry import MODELS


@pytest.mark.parametrize("depth,channels", [(18, 512), (50, 2048)])
def test_resnet_out_channels_and_shape(depth, channels):
    bb = MODELS.build({"type": "ResNet", "depth": depth})
    assert bb.out_channels == channels
    assert bb(torch.randn(2, 3, 64, 64)).shape == (2, channels, 2, 2)


@pytest.mark.parametrize("with_bn", [False, True])
def test_vgg_backbone(with_bn):
    bb = MODELS.build({"type": "VGG", "depth": 11, "with_bn": with_bn})
    assert bb.out_channels == 512 and bb(torch.randn(1, 3, 32, 32)).shape == (1, 512, 1, 1)


def test_frozen_stages_have_no_grad_and_eval_bn():
    bb = MODELS.build({"type": "ResNet", "depth": 18, "frozen_stages": 1})
    bb.train()
    assert not any(p.requires_grad for p in bb.stem.parameters())
    assert not any(p.requires_grad for p in bb.layer1.parameters())
    assert all(p.requires_grad for p in bb.layer2.parameters())
    assert not bb.layer1[0].bn1.training and bb.layer2[0].bn1.training
    vgg = MODELS.build({"type": "VGG", "depth": 11, "frozen_stages": 0})
    assert not any(p.requires_grad for p in vgg.features[0].parameters())
    assert all(p.requires_grad for p in vgg.features[1].parameters())


def test_classifier_takes_in_channels_from_backbone_and_emits_logits():
    model = build_model(
        {
            "type": "ImageClassifier",
            "backbone": {"type": "VGG", "depth": 11},
            "head": {"type": "MultiLabelMLPHead", "hidden_channels": [64, 32], "dropout": 0.1},
        },
        num_classes=5,
    )
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    logits = model(x)
    probs = model(x, mode="predict")
    assert logits.shape == (3, 5)
    torch.testing.assert_close(probs, torch.sigmoid(logits))  # sigmoid only at prediction
    loss = model(x, torch.randint(0, 2, (3, 5)).float(), mode="loss")["loss"]
    loss.backward()
    assert loss.ndim == 0


def test_pretrained_from_local_file(tmp_path):
    src = MODELS.build({"type": "ResNet", "depth": 18})
    torch.save({"state_dict": {"backbone." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    # keys as torchvision names them (conv1, bn1, layer1...) map into the backbone
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    bb = MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(tmp_path / "tv.pth")})
    torch.testing.assert_close(bb.stem[0].weight, tv.conv1.weight)
    torch.testing.assert_close(bb.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)


def test_pretrained_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(tmp_path / "missing.pth")})
    with pytest.raises(CheckpointError, match="neither an existing file nor a weights name.*IMAGENET1K_V1"):
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": "IMAGENET_V9"})
    with pytest.raises(BuildError, match="depth must be one of"):
        MODELS.build({"type": "ResNet", "depth": 19})


def test_every_weights_reader_checks_the_checksum(tmp_path):
    """One reader for all weights: a plain (torchvision-format) file with one flipped byte inside a
    tensor is refused by ``pretrained:`` and ``load_from`` as a checkpoint is by ``--resume``."""
    import torchvision

    from mlcls.utils.checkpoint import load_model_weights, read_file

    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    read_file(path)  # intact: reads
    data = bytearray(path.read_bytes())
    at = data.index(b"\x00", len(data) // 2)  # inside the tensor records, not the zip directory
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: the checksum"):
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(path)})
    model = MODELS.build(
        {
            "type": "ImageClassifier",
            "backbone": {"type": "ResNet", "depth": 18},
            "head": {"type": "MultiLabelLinearClsHead", "num_classes": 3},
        }
    )
    with pytest.raises(CheckpointError, match="damaged: the checksum"):
        load_model_weights(model, path)


def test_images_smaller_than_the_backbone_takes_are_one_clear_error(make_config):
    # VGG's five 2x2 max-pools need 32 px: 28 px slices failed deep inside torch after training began
    from mlcls.apis.train import build_trainer
    from mlcls.errors import ConfigError

    vgg = {"type": "ImageClassifier", "backbone": {"type": "VGG", "depth": 11}, "head": {"type": "MultiLabelLinearClsHead"}}
    model = build_model(vgg, num_classes=3)
    with pytest.raises(ConfigError, match=r"VGG takes images of at least 32x32 px, the smaller side of a batch of 28x40 images is 28 px"):
        model(torch.zeros(1, 3, 28, 40))  # the first batch, where no pipeline fixes the size
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    cfg = make_config()
    cfg["model"]["backbone"] = {"type": "VGG", "depth": 11}
    cfg["val_dataloader"]["dataset"]["pipeline"].insert(0, {"type": "Resize", "size": [28, 28]})
    with pytest.raises(
        ConfigError, match=r"the smaller side of the images val_dataloader.dataset.pipeline puts out is 28 px; add a Resize"
    ):
        build_trainer(cfg)  # at build time: before any training
    resnet = build_model({**vgg, "backbone": {"type": "ResNet", "depth": 18}}, num_classes=3)
    assert resnet(torch.zeros(2, 3, 28, 28)).shape == (2, 3)  # a ResNet takes them
