import pytest
import torch

from mlcls.errors import BuildError
from mlcls.registry import OPTIMIZERS, SCHEDULERS, TRANSFORMS, Registry


def test_register_and_build_with_defaults():
    reg = Registry("thing")

    @reg.register_module()
    class Foo:
        def __init__(self, a, b=2):
            self.a, self.b = a, b

    obj = reg.build({"type": "Foo", "b": 5}, a=1)
    assert (obj.a, obj.b) == (1, 5)
    # the config wins over a default passed by the parent
    assert reg.build({"type": "Foo", "a": 7}, a=1).a == 7
    # a default the class does not accept is dropped (parents offer what they know)
    assert reg.build({"type": "Foo", "a": 1}, in_channels=3).a == 1


def test_unknown_type_names_registry_and_suggests():
    reg = Registry("loss")
    reg.register_module("FocalLoss", object)
    with pytest.raises(BuildError, match=r"unknown loss type 'FocalLos'; did you mean 'FocalLoss'"):
        reg.build({"type": "FocalLos"})


def test_bad_keyword_names_component_and_key():
    reg = Registry("model")

    @reg.register_module()
    class Head:
        def __init__(self, num_classes, in_channels=8):
            pass

    with pytest.raises(BuildError, match=r"'Head' got an unexpected key 'num_clases'; did you mean 'num_classes'"):
        reg.build({"type": "Head", "num_clases": 3})


def test_duplicate_registration_names_both_places():
    reg = Registry("x")

    class A:
        pass

    class B:
        pass

    reg.register_module("A", A)
    reg.register_module("A", A)  # the same object again is harmless
    with pytest.raises(
        BuildError, match=r"'A' is already registered by .*test_registry.py.*cannot register it again from .*test_registry.py"
    ):
        reg.register_module("A", B)


def test_missing_type_key():
    with pytest.raises(BuildError, match="'type' key"):
        Registry("x").build({"lr": 1})


def test_torch_optimizers_schedulers_and_v2_transforms_by_name():
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = OPTIMIZERS.build({"type": "SGD", "lr": 0.1, "momentum": 0.9}, params=p)
    assert isinstance(opt, torch.optim.SGD)
    assert isinstance(SCHEDULERS.build({"type": "StepLR", "step_size": 3}, optimizer=opt), torch.optim.lr_scheduler.StepLR)
    for name in ("Resize", "RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "RandAugment", "Normalize"):
        assert name in TRANSFORMS


def test_a_fresh_interpreter_builds_built_in_components_through_the_registry_alone():
    import subprocess
    import sys

    code = (
        "from mlcls.registry import LOSSES, HOOKS, DATASETS;"
        "print(type(LOSSES.build({'type': 'FocalLoss'})).__name__);"
        "print('AsymmetricLoss' in LOSSES.keys(), 'CheckpointHook' in HOOKS.keys(), 'CSVDataset' in DATASETS)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["FocalLoss", "True", "True", "True"]
