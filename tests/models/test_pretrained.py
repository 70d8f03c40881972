"""Fine-tuning sources: torchvision, timm, mlcls and mmpretrain files, each loaded for real and checked
tensor by tensor; a file that matches nothing is an error, never a random start reported as loaded."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision

from mlcls.apis import build_trainer
from mlcls.errors import CheckpointError
from mlcls.models import build_model
from mlcls.registry import MODELS
from mlcls.utils.checkpoint import save_checkpoint


def mmpretrain_resnet18_keys(tv: torch.nn.Module, num_classes: int) -> OrderedDict:
    """An mmpretrain ImageClassifier checkpoint's state dict for ResNet-18, key for key as mmpretrain
    names it: ``backbone.conv1`` / ``backbone.bn1`` stem, ``backbone.layerN.M.{conv1,bn1,conv2,bn2,
    downsample.0,downsample.1}`` (its BasicBlock registers its norms as bn1/bn2), ``head.fc``."""
    sd = OrderedDict(("backbone." + k, v.clone()) for k, v in tv.state_dict().items() if not k.startswith("fc."))
    sd["head.fc.weight"] = torch.randn(num_classes, 512)
    sd["head.fc.bias"] = torch.randn(num_classes)
    return sd


def mmpretrain_vgg11_bn_keys(tv: torch.nn.Module) -> OrderedDict:
    """mmpretrain's VGG: one ``features`` Sequential of ConvModules (``.conv``, ``.bn``) and MaxPools."""
    sd, i = OrderedDict(), 0
    layers = list(tv.features)
    j = 0
    while j < len(layers):
        layer = layers[j]
        if isinstance(layer, torch.nn.Conv2d):
            bn = layers[j + 1]
            for name, t in layer.state_dict().items():
                sd[f"backbone.features.{i}.conv.{name}"] = t.clone()
            for name, t in bn.state_dict().items():
                sd[f"backbone.features.{i}.bn.{name}"] = t.clone()
            j += 3  # conv, bn, relu: one ConvModule
        else:
            j += 1  # a MaxPool2d: a module without tensors
        i += 1
    return sd


def assert_same(backbone: torch.nn.Module, pairs) -> None:
    for ours, theirs in pairs:
        assert torch.equal(ours, theirs)


def resnet_pairs(bb, tv):
    own = bb.state_dict()
    for k, v in tv.state_dict().items():
        if k.startswith("fc."):
            continue
        mapped = (
            k.replace("conv1.", "stem.0.", 1) if k.startswith("conv1.") else k.replace("bn1.", "stem.1.", 1) if k.startswith("bn1.") else k
        )
        yield own[mapped], v


def test_fine_tune_from_a_torchvision_state_dict(make_config, tmp_path, mlcls_log):
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "resnet18-tv.pth")
    cfg = make_config()
    cfg["model"]["backbone"]["pretrained"] = str(tmp_path / "resnet18-tv.pth")
    trainer = build_trainer(cfg)  # what tools/train.py builds
    bb = trainer.model.backbone
    assert_same(bb, resnet_pairs(bb, tv))
    assert "loaded 100/100 backbone tensors from" in mlcls_log.text and "missing: none" in mlcls_log.text


def test_fine_tune_from_an_mmpretrain_checkpoint(tmp_path, mlcls_log):
    tv = torchvision.models.resnet18()
    path = tmp_path / "resnet18_8xb32_in1k.pth"
    torch.save({"meta": {"epoch": 100, "dataset_meta": {"classes": ["a"] * 1000}}, "state_dict": mmpretrain_resnet18_keys(tv, 1000)}, path)
    bb = MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(path)})
    assert_same(bb, resnet_pairs(bb, tv))
    assert "loaded 100/100" in mlcls_log.text and "non-backbone tensors (head.fc.weight, head.fc.bias)" in mlcls_log.text

    vgg = torchvision.models.vgg11_bn()
    torch.save({"state_dict": mmpretrain_vgg11_bn_keys(vgg)}, tmp_path / "vgg11bn_mm.pth")
    ours = MODELS.build({"type": "VGG", "depth": 11, "with_bn": True, "pretrained": str(tmp_path / "vgg11bn_mm.pth")})
    convs = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ref_convs = [m for m in vgg.features if isinstance(m, torch.nn.Conv2d)]
    ref_norms = [m for m in vgg.features if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(ref_convs) == 8
    for a, b in zip(convs + norms, ref_convs + ref_norms):
        for (ka, ta), (kb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(ta, tb)


def test_torchvision_vgg_file_maps_into_the_blocks(tmp_path):
    vgg = torchvision.models.vgg11()
    torch.save(vgg.state_dict(), tmp_path / "vgg11.pth")
    ours = MODELS.build({"type": "VGG", "depth": 11, "pretrained": str(tmp_path / "vgg11.pth")})
    convs = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    for a, b in zip(convs, [m for m in vgg.features if isinstance(m, torch.nn.Conv2d)]):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_pretrained_from_an_mlcls_checkpoint_and_load_from_with_another_class_count(make_config, tmp_path, mlcls_log, monkeypatch):
    src = build_model(
        {"type": "ImageClassifier", "backbone": {"type": "ResNet", "depth": 18}, "head": {"type": "MultiLabelLinearClsHead"}}, num_classes=5
    )
    save_checkpoint({"meta": {"classes": list("abcde")}, "state_dict": src.state_dict()}, tmp_path / "epoch_3.pth")
    # pretrained: the backbone part of a whole mlcls checkpoint
    bb = MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(tmp_path / "epoch_3.pth")})
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(bb.state_dict()[k], v), k
    # load_from: the whole model; the head (5 classes there, 10 here) is skipped with a warning naming it
    cfg = make_config()
    cfg["load_from"] = str(tmp_path / "epoch_3.pth")
    from mlcls.apis import train_model
    from mlcls.engine import Trainer

    seen = {}
    monkeypatch.setattr(Trainer, "train", lambda self: seen.update(self.model.state_dict()) or {})  # the state training starts from
    train_model(cfg)
    log = (tmp_path / "work" / "train.log").read_text()
    assert "head tensors skipped" in log and "head.fc.weight [5, 512] in the file, [10, 512] here" in log
    assert "loaded 100/100 backbone tensors" in log
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(seen["backbone." + k], v), k
    assert seen["head.fc.weight"].shape == (10, 512)


def test_load_from_loads_the_head_when_the_class_count_agrees(make_config, tmp_path):
    from mlcls.utils.checkpoint import load_model_weights

    cfg = make_config()
    a = build_trainer(cfg).model
    save_checkpoint({"meta": {}, "state_dict": a.state_dict()}, tmp_path / "a.pth")
    b = build_trainer(dict(cfg, seed=5)).model
    load_model_weights(b, tmp_path / "a.pth")
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k


def test_timm_state_dict_and_safetensors(tmp_path, mlcls_log):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet10t", num_classes=1000)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    save_file(ref.state_dict(), tmp_path / "timm.safetensors")
    for name in ("timm.pth", "timm.safetensors"):
        bb = MODELS.build({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": str(tmp_path / name)})
        for k, v in ref.state_dict().items():
            if not k.startswith("fc."):
                assert torch.equal(bb.model.state_dict()[k], v), k
        assert "unused: fc." in mlcls_log.text


def test_a_file_that_matches_nothing_is_an_error_naming_keys(tmp_path):
    torch.save({"encoder.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as e:
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(tmp_path / "other.pth")})
    msg = str(e.value)
    assert "other.pth" in msg and "only 0 of the 100 tensors" in msg
    assert "'stem.0.weight'" in msg and "'encoder.blocks.0.attn.qkv.weight'" in msg


def test_a_shape_mismatch_names_the_tensor(tmp_path):
    tv = torchvision.models.resnet18()
    sd = tv.state_dict()
    sd["layer2.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"'layer2.0.conv1.weight' has shape \[64, 64, 3, 3\] in the file but \[128, 64, 3, 3\]"):
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": str(tmp_path / "bad.pth")})


def test_torchvision_alexnet_file_loads_and_the_paper_model_is_a_config(tmp_path, mlcls_log):
    # MRNet's model: AlexNet per slice, max over slices, a linear head (configs/recipes/mrnet_*_alexnet_*.yaml)
    from mlcls.config import load_config
    from mlcls.errors import ConfigError

    alex = torchvision.models.alexnet()
    torch.save(alex.state_dict(), tmp_path / "alexnet.pth")
    ours = MODELS.build({"type": "AlexNet", "pretrained": str(tmp_path / "alexnet.pth"), "frozen_stages": 0})
    for (name, a), b in zip(ours.features.state_dict().items(), alex.features.state_dict().values()):
        assert torch.equal(a, b), name
    assert not any(p.requires_grad for p in ours.features[:3].parameters()) and all(p.requires_grad for p in ours.features[3:].parameters())
    from pathlib import Path

    from mlcls.datasets.bags import BagBatch

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs/recipes/mrnet_sagittal_alexnet_max.yaml")
    assert cfg["model"]["backbone"]["type"] == "AlexNet" and cfg["model"]["neck"] == {"type": "InstancePooling", "mode": "max"}
    cfg["model"]["backbone"]["pretrained"] = str(tmp_path / "alexnet.pth")
    model = build_model(cfg["model"], num_classes=3).eval()
    assert torch.equal(model.backbone.features[0].weight, alex.features[0].weight)
    bags = BagBatch({"sagittal": (torch.rand(7, 3, 64, 64), torch.tensor([3, 4]))})  # two exams of 3 and 4 slices
    assert model(bags).shape == (2, 3)
    with pytest.raises(ConfigError, match="AlexNet takes images of at least 63x63 px"):
        model.check_input_size(32)


def test_torchvision_weight_names_are_downloaded_then_read_by_the_safe_reader_and_counted(tmp_path, monkeypatch, mlcls_log):
    from torchvision.models import ResNet18_Weights

    ref = torchvision.models.resnet18()
    url = ResNet18_Weights.IMAGENET1K_V1.url  # .../resnet18-f37072fd.pth: the name carries a sha256 prefix
    asked = []
    real = torch.hub.download_url_to_file

    def download_url_to_file(u, dst, hash_prefix=None, progress=True):  # the network: a local file instead
        asked.append((u, hash_prefix))
        torch.save(ref.state_dict(), tmp_path / "served.pth")
        real((tmp_path / "served.pth").as_uri(), dst, hash_prefix=None, progress=False)  # (its bytes are not the published ones)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", download_url_to_file)
    bb = MODELS.build({"type": "ResNet", "depth": 18, "pretrained": "IMAGENET1K_V1"})
    assert asked == [(url, "f37072fd")]  # torch hub checks the download against the name's hash
    assert torch.equal(bb.stem[0].weight, ref.conv1.weight) and torch.equal(bb.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    assert "ResNet18_Weights.IMAGENET1K_V1" in mlcls_log.text and "loaded 100/100 backbone tensors" in mlcls_log.text  # counted like a file
    MODELS.build({"type": "ResNet", "depth": 18, "pretrained": "IMAGENET1K_V1"})
    assert len(asked) == 1  # cached: downloaded once

    # nobody unpickles a download: a file holding an object is refused like a local one
    (tmp_path / "torch_home/hub/checkpoints/resnet18-f37072fd.pth").unlink()
    monkeypatch.setattr(ref, "state_dict", lambda: {"conv1.weight": torch.zeros(1), "x": torch.nn.ReLU()})
    with pytest.raises(CheckpointError, match=r"refusing to load .*resnet18-f37072fd.pth: it contains a pickled 'torch.nn.modules"):
        MODELS.build({"type": "ResNet", "depth": 18, "pretrained": "IMAGENET1K_V1"})


def test_a_download_is_checked_against_the_hash_in_its_name_and_kept_only_then(tmp_path, monkeypatch, mlcls_log):
    import hashlib

    from mlcls.utils.checkpoint import download_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.save({"w": torch.ones(3)}, tmp_path / "src.pth")
    digest = hashlib.sha256((tmp_path / "src.pth").read_bytes()).hexdigest()
    good = tmp_path / f"net-{digest[:8]}.pth"
    bad = tmp_path / "net-00000000.pth"
    for p in (good, bad):
        p.write_bytes((tmp_path / "src.pth").read_bytes())
    # torch hub's real downloader (file:// URLs need no network)
    path = download_weights(good.as_uri(), "test weights")
    assert path.parent == tmp_path / "torch_home/hub/checkpoints" and torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match=r"could not download test weights from file://.*net-00000000.pth \(invalid hash value"):
        download_weights(bad.as_uri(), "test weights")
    assert not (tmp_path / "torch_home/hub/checkpoints/net-00000000.pth").exists()  # nothing half-kept
    plain = tmp_path / "plain.pth"
    plain.write_bytes(good.read_bytes())
    download_weights(plain.as_uri(), "test weights")
    assert "plain.pth: downloaded without a published hash" in mlcls_log.text


def _fake_hub(monkeypatch, tmp_path, files: dict) -> list:
    """The Hugging Face hub's download serves ``files`` (``repo/name -> bytes``) from disk; what
    follows it (the safe reader, timm's name converter, name maps, counting) is the real path."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    fetched = []

    def hf_hub_download(repo_id, filename, **kwargs):
        key = f"{repo_id}/{filename}"
        fetched.append(key)
        if key not in files:
            raise EntryNotFoundError(f"404: {key}")
        out = tmp_path / "hf" / key
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(files[key])
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return fetched


def test_timm_pretrained_true_fetches_the_file_and_reads_it_like_any_other(tmp_path, monkeypatch, mlcls_log):
    import timm
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    ref = timm.create_model("resnet10t", num_classes=1000)
    save_file(ref.state_dict(), tmp_path / "model.safetensors")
    hub_id = get_pretrained_cfg("resnet10t").hf_hub_id
    fetched = _fake_hub(monkeypatch, tmp_path, {f"{hub_id}/model.safetensors": (tmp_path / "model.safetensors").read_bytes()})
    bb = MODELS.build({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": True})
    assert fetched == [f"{hub_id}/model.safetensors"]
    for k, v in ref.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(bb.model.state_dict()[k], v), k
    text = mlcls_log.text
    assert "unused: fc." in text and "a safetensors file has no checksum" in text  # counted, and the missing check said

    # a repository with only the older format; then no hub at all: the one error says what to do
    torch.save(ref.state_dict(), tmp_path / "w.bin")
    fetched = _fake_hub(monkeypatch, tmp_path, {f"{hub_id}/pytorch_model.bin": (tmp_path / "w.bin").read_bytes()})
    MODELS.build({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": True})
    assert fetched == [f"{hub_id}/model.safetensors", f"{hub_id}/pytorch_model.bin"]

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(CheckpointError, match=r"could not download timm weights of resnet10t from https://.*Offline\?"):
        MODELS.build({"type": "TimmBackbone", "model_name": "resnet10t", "pretrained": True})
