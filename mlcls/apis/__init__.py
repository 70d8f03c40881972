from mlcls.apis.config import prepare_config
from mlcls.apis.inference import inference_model, init_model
from mlcls.apis.model import build_from_checkpoint
from mlcls.apis.test import test_model
from mlcls.apis.train import build_trainer, train_model

__all__ = ["prepare_config", "build_trainer", "train_model", "test_model", "build_from_checkpoint", "init_model", "inference_model"]
