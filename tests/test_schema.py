"""The config schema (mlcls/schema.py) is the one list of the keys mlcls reads: docs/config.md
describes each of them, with the same defaults, and the checks it drives name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlcls.errors import ConfigError
from mlcls.schema import KEYS, REQUIRED, TOP_LEVEL, check_config, get

DOC = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()


def top_level_rows() -> dict[str, str]:
    """docs/config.md's 'Top-level keys' table: each key named in a row's first column -> that row."""
    table = DOC.split("## Top-level keys", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            first, rest = line[2:].split(" | ", 1)
            for key in re.findall(r"`([a-z][a-z0-9_]*)`", first):
                rows[key] = rest
    return rows


def test_every_top_level_key_is_documented_and_every_documented_key_is_read():
    rows = top_level_rows()
    assert sorted(rows) == sorted(TOP_LEVEL)


@pytest.mark.parametrize("key", [k for k in KEYS if "." in k.path], ids=lambda k: k.path)
def test_every_section_key_is_documented_in_its_row(key):
    section, leaf = key.path.split(".", 1)
    row = top_level_rows()[section]
    assert re.search(rf"\b{re.escape(leaf)}\b", row), f"docs/config.md's row of '{section}' does not mention '{leaf}'"


def test_documented_train_cfg_defaults_are_the_schema_defaults():
    row = top_level_rows()["train_cfg"]
    documented = dict(re.findall(r"`([a-z_]+)` \(([^):,]+)", row))
    assert documented, "the train_cfg row states no defaults"
    for leaf, text in documented.items():
        default = next(k.default for k in KEYS if k.path == f"train_cfg.{leaf}")
        expected = "required" if default is REQUIRED else yaml.safe_dump(default).splitlines()[0]
        assert text.strip() == expected, f"train_cfg.{leaf}: docs say {text!r}, the schema {expected!r}"


def test_checks_name_the_key_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"cfg\.yaml: train_cfg\.accumulate must be an integer >= 1, got 0 \(int\)"):
        check_config({"train_cfg": {"max_epochs": 1, "accumulate": 0}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"train_cfg: unknown key 'max_epoch'; did you mean 'max_epochs'\?"):
        check_config({"train_cfg": {"max_epoch": 3}}, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"ema\.val_weights must be 'ema', 'raw' or 'both', got 'best'"):
        check_config({"ema": {"val_weights": "best"}})
    with pytest.raises(ConfigError, match="unknown top-level key 'optimiser'; did you mean 'optimizer'"):
        check_config({"optimiser": {}})


def test_get_returns_the_value_or_the_schema_default():
    cfg = {"train_cfg": {"max_epochs": 3}, "ema": {"decay": 0.99}}
    assert get(cfg, "train_cfg.max_epochs") == 3 and get(cfg, "train_cfg.accumulate") == 1
    assert get(cfg, "ema.decay") == 0.99 and get(cfg, "ema.val_weights") == "ema" and get(cfg, "seed") == 0
    with pytest.raises(ConfigError, match="missing required key 'optimizer.lr'"):
        get(cfg, "optimizer.lr")
    get(cfg, "custom_hooks").append(1)  # a default list is a fresh copy
    assert get(cfg, "custom_hooks") == []
