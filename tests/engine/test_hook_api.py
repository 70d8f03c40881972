"""Hooks change a run only through the trainer's declared calls, and run in named priority order."""

from __future__ import annotations

import ast
from pathlib import Path

import mlcls.engine.hooks as hooks_module
from mlcls.engine import CheckpointHook, CollapseGuardHook, EarlyStoppingHook, LoggerHook, Priority, ThresholdTuningHook, Trainer
from mlcls.engine.hook import TrainerView


def test_no_built_in_hook_assigns_to_the_trainer():
    """Every change goes through request_stop / set_thresholds / measure_grad_norm / put_metric."""
    tree = ast.parse(Path(hooks_module.__file__).read_text())
    writes = [
        f"line {node.lineno}: trainer.{t.attr}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AugAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "trainer"
    ]
    assert not writes, writes


def test_the_trainer_offers_everything_a_hook_may_use():
    wanted = {n for n in dir(TrainerView) if not n.startswith("_")} | set(TrainerView.__annotations__)
    missing = [n for n in wanted if not hasattr(Trainer, n) and n not in Trainer.__init__.__code__.co_names]
    assert not missing, missing


def test_built_in_hooks_run_in_named_priority_order():
    built = [EarlyStoppingHook(), CheckpointHook(), ThresholdTuningHook(), LoggerHook(), CollapseGuardHook()]
    order = [type(h).__name__ for h in sorted(built, key=lambda h: h.priority)]
    assert order == ["CollapseGuardHook", "LoggerHook", "ThresholdTuningHook", "CheckpointHook", "EarlyStoppingHook"]
    assert [h.priority for h in sorted(built, key=lambda h: h.priority)] == [
        Priority.GUARD, Priority.LOG, Priority.TUNE, Priority.CHECKPOINT, Priority.STOP
    ]  # fmt: skip
