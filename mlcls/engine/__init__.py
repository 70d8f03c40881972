from mlcls.engine.hooks import CheckpointHook, Hook, LoggerHook, ThresholdTuningHook, build_hooks
from mlcls.engine.optim import build_optimizer, build_scheduler
from mlcls.engine.trainer import Trainer

__all__ = ["Trainer", "Hook", "CheckpointHook", "LoggerHook", "ThresholdTuningHook", "build_hooks", "build_optimizer", "build_scheduler"]
