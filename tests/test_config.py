import textwrap

import pytest

from mlcls.config import apply_overrides, dump_config, import_custom_modules, load_config, merge_config
from mlcls.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_base_inheritance_merges_left_to_right_file_on_top(tmp_path):
    write(
        tmp_path / "base/a.yaml",
        """
        model: {backbone: {type: ResNet, depth: 50}, head: {type: H, num: 3}}
        lst: [1, 2, 3]
        x: 1
    """,
    )
    write(
        tmp_path / "base/b.yaml",
        """
        model: {backbone: {depth: 101}}
        x: 2
    """,
    )
    cfg = load_config(
        write(
            tmp_path / "c.yaml",
            """
        _base_: [base/a.yaml, base/b.yaml]
        lst: [9]
        model: {head: {num: 4}}
    """,
        )
    )
    assert cfg["model"]["backbone"] == {"type": "ResNet", "depth": 101}  # dicts deep-merge
    assert cfg["model"]["head"] == {"type": "H", "num": 4}
    assert cfg["lst"] == [9]  # lists replace
    assert cfg["x"] == 2  # later base wins
    assert "_base_" not in cfg


def test_single_base_string_and_nested_bases(tmp_path):
    write(tmp_path / "a.yaml", "a: 1\n")
    write(tmp_path / "sub/b.yaml", "_base_: ../a.yaml\nb: 2\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: sub/b.yaml\nc: 3\n"))
    assert cfg == {"a": 1, "b": 2, "c": 3}


def test_delete_replaces_inherited_dict(tmp_path):
    write(tmp_path / "a.yaml", "optimizer: {type: SGD, lr: 0.1, momentum: 0.9}\n")
    cfg = load_config(write(tmp_path / "b.yaml", "_base_: a.yaml\noptimizer: {_delete_: true, type: Adam, lr: 0.001}\n"))
    assert cfg["optimizer"] == {"type": "Adam", "lr": 0.001}


def test_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1}}
    merge_config(base, {"a": {"c": 2}})
    assert base == {"a": {"b": 1}}


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="_base_ file not found: gone.yaml"):
        load_config(write(tmp_path / "x.yaml", "_base_: gone.yaml\n"))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+"):
        load_config(p)


def test_base_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_overrides_parse_yaml_values_and_index_lists():
    cfg = {"optimizer": {"lr": 0.1}, "pipe": [{"size": 32}, {"p": 0.5}], "flag": False}
    out = apply_overrides(cfg, ["optimizer.lr=1e-3", "pipe.0.size=64", "flag=true", "pipe.1.p=[1, 2]"])
    assert out["optimizer"]["lr"] == 1e-3 and isinstance(out["optimizer"]["lr"], float)
    assert out["pipe"][0]["size"] == 64
    assert out["flag"] is True
    assert out["pipe"][1]["p"] == [1, 2]
    assert cfg["optimizer"]["lr"] == 0.1  # input untouched


def test_unknown_override_key_suggests_close_names():
    cfg = {"optimizer": {"lr": 0.1, "momentum": 0.9}}
    with pytest.raises(ConfigError, match=r"optimizer.lrr.*did you mean 'lr'"):
        apply_overrides(cfg, ["optimizer.lrr=0.2"])
    with pytest.raises(ConfigError, match="did you mean 'optimizer'"):
        apply_overrides(cfg, ["optimiser.lr=0.2"])


def test_anchor_holders_are_never_suggested_and_setting_one_names_the_keys_it_fed(tmp_path):
    # '_data_root: &root ...' feeds '*root' when the file is read; afterwards it changes nothing
    path = write(
        tmp_path / "c.yaml",
        """
        _data_root: &root data/shapes
        train_dataloader: {dataset: {data_root: *root, ann_file: train.csv}}
        val_dataloader: {dataset: {data_root: *root}}
        work_dir: data/shapes
    """,
    )
    cfg = load_config(path)
    with pytest.raises(ConfigError) as e:
        apply_overrides(cfg, ["data_root=/my/data"])
    assert "_data_root" not in str(e.value)
    assert "it is at train_dataloader.dataset.data_root, val_dataloader.dataset.data_root" in str(e.value)
    for opt in ("_data_root=/my/data", "+_data_root=/my/data"):
        with pytest.raises(ConfigError, match=r"'_data_root' has no effect.*set the keys it fed instead: "
                           r"train_dataloader.dataset.data_root, val_dataloader.dataset.data_root, work_dir$"):  # fmt: skip
            apply_overrides(cfg, [opt])
    with pytest.raises(ConfigError, match="did you mean 'train_dataloader'"):  # no '_' key among the suggestions
        apply_overrides({"_train": 1, "train_dataloader": {}}, ["train_dataloaders.x=1"])


def test_plus_adds_new_keys_and_parents():
    out = apply_overrides({"model": {"head": {}}}, ["+model.head.loss.pos_weight=3.0"])
    assert out["model"]["head"]["loss"] == {"pos_weight": 3.0}


def test_bad_list_index_and_malformed_option():
    with pytest.raises(ConfigError, match="not a valid index"):
        apply_overrides({"pipe": [1]}, ["pipe.5=2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["novalue"])


def test_custom_imports_registers_user_components(tmp_path, monkeypatch):
    (tmp_path / "my_plugin_mod.py").write_text(
        textwrap.dedent("""
        import torch
        from mlcls.registry import LOSSES

        @LOSSES.register_module()
        class MyPluginLoss(torch.nn.Module):
            def __init__(self, scale=1.0):
                super().__init__()
                self.scale = scale
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import_custom_modules({"custom_imports": ["my_plugin_mod"]})
    from mlcls.registry import LOSSES

    assert LOSSES.build({"type": "MyPluginLoss", "scale": 2.0}).scale == 2.0
    with pytest.raises(ConfigError, match="cannot import 'no_such_mod'"):
        import_custom_modules({"custom_imports": ["no_such_mod"]})


def test_dump_round_trip(tmp_path):
    cfg = {"a": {"b": [1, 2.5, "x"]}, "c": None, "d": True}
    dump_config(cfg, tmp_path / "out/config.yaml")
    assert load_config(tmp_path / "out/config.yaml") == cfg
