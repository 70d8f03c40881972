"""YAML configs with mmcls-style ``_base_`` inheritance and ``--cfg-options`` overrides.

A config is a plain ``dict`` (no global singleton, no magic attribute access):

* ``_base_: path`` or ``_base_: [a, b]`` (relative to the file) are merged left to right, the file
  itself on top. Dicts deep-merge; lists and scalars replace; ``_delete_: true`` inside a dict
  replaces the inherited dict instead of merging into it.
* :func:`apply_overrides` takes ``a.b.c=VALUE`` strings (VALUE parsed as YAML; list items by index).
  A key path that does not exist is an error with suggestions; ``+a.b=VALUE`` adds a key on purpose.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from mlcls.errors import ConfigError
from mlcls.utils.fileio import atomic_open

__all__ = [
    "load_config", "merge_config", "apply_overrides", "dump_config", "import_custom_modules", "unsafe_entries", "check_untrusted_config",
]  # fmt: skip


#: a config expands to at most this many values once aliases are followed ("billion laughs" guard)
MAX_YAML_NODES = 1_000_000


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with three changes:

    * ``1e-3`` (no dot) is a float, as in YAML 1.2 (PyYAML follows YAML 1.1, where ``lr: 1e-3``
      would silently be the string "1e-3");
    * a key given twice in one mapping is an error (PyYAML silently keeps the last);
    * a document whose aliases expand to more than :data:`MAX_YAML_NODES` values is refused
      before anything is built: PyYAML shares aliased nodes, but every copy of the config
      (merging, overrides) would expand them, and nine nested aliases of nine make 387M values.
    """

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            size = _expanded_size(node, {}, MAX_YAML_NODES)
            if size > MAX_YAML_NODES:
                raise yaml.YAMLError(
                    f"its aliases expand to more than {MAX_YAML_NODES:,} values (an alias bomb?); a config never needs that many"
                )
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        f"while reading a mapping (first '{key}' at line {seen[key].line + 1})",
                        node.start_mark,
                        f"the key '{key}' is given twice; YAML would silently keep only the last",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, memo: dict, limit: int) -> int:
    """Values ``node`` stands for with every alias expanded (shared nodes counted per use), capped at ``limit + 1``."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of looping
    total = 1
    children = node.value if isinstance(node, yaml.SequenceNode) else (
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    )  # fmt: skip
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[key] = min(total, limit + 1)
    return memo[key]


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text_or_stream):
    """``yaml.safe_load`` with the fixes above (never constructs arbitrary objects).

    Raises:
        yaml.YAMLError: syntax errors, duplicate keys, alias bombs, absurd nesting depth.
    """
    try:
        return yaml.load(text_or_stream, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("it is nested too deeply to be a config") from None


BASE_KEY = "_base_"
DELETE_KEY = "_delete_"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"YAML syntax error in {where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"YAML error in {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping, got {type(data).__name__}")
    return data


def merge_config(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge; anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict):
            value = dict(value)
            replace = value.pop(DELETE_KEY, False)
            if not replace and isinstance(out.get(key), dict):
                out[key] = merge_config(out[key], value)
                continue
            out[key] = _strip_delete(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


def load_config(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """Load a YAML config and resolve its ``_base_`` files.

    Raises:
        ConfigError: missing file, YAML syntax error (with file and line), ``_base_`` cycle.
    """
    path = Path(path).resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"_base_ cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '_base_' must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file not found: {base} (looked at {base_path})")
        merged = merge_config(merged, load_config(base_path, (*_chain, path)))
    return _strip_delete(merge_config(merged, data))


def _parse_value(text: str) -> Any:
    try:
        return yaml_load(text) if text != "" else ""
    except yaml.constructor.ConstructorError as e:  # a duplicate key in an inline mapping: not a plain string either
        raise ConfigError(f"--cfg-options: '{text}': {e.problem}") from None
    except yaml.YAMLError:
        return text


def _suggest(key: str, options: Iterable[str]) -> str:
    # keys that start with '_' hold YAML anchors (or are markers): setting one changes nothing
    close = difflib.get_close_matches(key, [str(o) for o in options if not str(o).startswith("_")], n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _find_paths(node: Any, match, prefix: str = "") -> list[str]:
    """The key paths (``a.b.0.c``) below ``node`` of the entries for which ``match(key, value)``
    holds (the search stops at a match), skipping the '_' keys that only hold anchors."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, child in items:
        if isinstance(key, str) and key.startswith("_"):
            continue
        where = f"{prefix}.{key}" if prefix else str(key)
        found += [where] if match(key, child) else _find_paths(child, match, where)
    return found


def _anchor_holder_message(cfg: dict, key: str, path: str) -> str:
    """Why ``--cfg-options _key=...`` would do nothing, and which keys to set instead."""
    head = f"--cfg-options: '{path.lstrip('+')}' has no effect: keys that start with '_' only hold values for YAML anchors (&name), which were resolved when the file was read"
    if key not in cfg:
        return head
    fed = _find_paths(cfg, lambda _, v: v == cfg[key])
    return head + (f"; set the keys it fed instead: {', '.join(fed)}" if fed else "; nothing in the config uses its value")


def apply_overrides(cfg: dict, options: Iterable[str] | None) -> dict:
    """Apply ``key.path=VALUE`` overrides to a copy of ``cfg``.

    ``VALUE`` is parsed as YAML (``1e-3``, ``true``, ``[1, 2]``). Integer path parts index lists.
    A path that does not exist raises :class:`ConfigError` with close names, unless it starts with
    ``+``, which creates the key (and missing parent dicts).
    """
    cfg = copy.deepcopy(cfg)
    for opt in options or []:
        if "=" not in opt:
            raise ConfigError(f"--cfg-options: expected KEY=VALUE, got '{opt}'")
        path, text = opt.split("=", 1)
        add = path.startswith("+")
        parts = path.lstrip("+").split(".")
        if not all(parts):
            raise ConfigError(f"--cfg-options: malformed key '{path}'")
        if parts[0].startswith("_"):
            raise ConfigError(_anchor_holder_message(cfg, parts[0], path))
        # an override replaces what is there, so '_delete_: true' in its value is already done (and
        # must not reach a constructor as an argument)
        value = _strip_delete(_parse_value(text))
        node: Any = cfg
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                try:
                    idx = int(part)
                    node[idx]  # noqa: B018 - bounds check
                except (ValueError, IndexError):
                    raise ConfigError(
                        f"--cfg-options: '{where}': '{parts[depth - 1]}' is a list of {len(node)} items, '{part}' is not a valid index"
                    ) from None
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"--cfg-options: '{where}': its parent is a {type(node).__name__}, not a mapping")
            if part not in node:
                if not add:
                    deeper = _find_paths(node, lambda k, _, name=part: k == name, ".".join(parts[:depth]))
                    hint = f"; it is at {', '.join(deeper[:6])}" if deeper else _suggest(part, node)
                    raise ConfigError(
                        f"--cfg-options: key '{where}' does not exist in the config{hint} (prefix it with '+' to add a new key)"
                    )
                node[part] = value if last else {}
            elif last:
                node[part] = value
            node = node[part]
    return cfg


def import_custom_modules(cfg: dict) -> None:
    """Import the modules listed in ``custom_imports`` so their registrations take effect.

    Accepts a list of module names, or mmcls's ``{imports: [...], allow_failed_imports: false}``.
    """
    spec = cfg.get("custom_imports")
    if not spec:
        return
    allow_failed = False
    if isinstance(spec, dict):
        allow_failed = bool(spec.get("allow_failed_imports", False))
        spec = spec.get("imports", [])
    if isinstance(spec, str):
        spec = [spec]
    for name in spec:
        try:
            importlib.import_module(name)
        except ImportError as e:
            if not allow_failed:
                raise ConfigError(f"custom_imports: cannot import '{name}': {e}") from e


# Where a path is opened through another program: webdataset's opener runs a shell command for
# 'pipe:', curl for http(s)/sftp/ftps/scp, gsutil for gs, and so on (mlcls reads only local files itself).
PROGRAM_URL_SCHEMES = ("pipe:", "http://", "https://", "sftp://", "ftps://", "scp://", "gs://", "ais://", "hf://", "htgs://")

TRUST_HINT = "pass your own config file, or --trust-config (trust_config=True in Python) if you made this checkpoint or trust whoever did"


def unsafe_entries(cfg: Any, prefix: str = "") -> list[str]:
    """The entries of a config that would make mlcls import code or start a program, as ``key = value`` strings.

    These are ``custom_imports`` (importing a module runs it) and any string that an opener would
    hand to another program (:data:`PROGRAM_URL_SCHEMES`, e.g. ``shard_url: "pipe:..."``).
    """
    found = []
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if where == "custom_imports" and value:
                found.append(f"custom_imports = {value!r} (importing a module runs its code)")
            else:
                found += unsafe_entries(value, where)
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            found += unsafe_entries(value, f"{prefix}.{i}")
    elif isinstance(cfg, str) and cfg.strip().lower().startswith(PROGRAM_URL_SCHEMES):
        found.append(f"{prefix} = {cfg!r} (opening it starts another program)")
    return found


def check_untrusted_config(cfg: dict, source: str, trust: bool = False) -> None:
    """Refuse a config the user did not write themselves (one stored in a checkpoint) that would
    import modules or start programs, unless ``trust``; see docs/security.md.

    Raises:
        ConfigError: naming the first such key and how to opt in.
    """
    if trust:
        return
    found = unsafe_entries(cfg)
    if found:
        more = f" (and {len(found) - 1} more such entries)" if len(found) > 1 else ""
        raise ConfigError(f"{source}: its stored config sets {found[0]}{more}; mlcls does not run what a checkpoint asks for: {TRUST_HINT}")


def dump_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML (atomically: a reader never sees half a file)."""
    with atomic_open(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=None)


def config_sha256(cfg: dict) -> str:
    """A hash of what a run trains with: the config without where it writes (``work_dir``) and
    which device runs it (a worker of a pool runs on its own GPU)."""
    body = {key: v for key, v in cfg.items() if key not in ("work_dir", "device")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
