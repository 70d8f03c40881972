from mlcls.models import backbones, heads, necks  # noqa: F401 - registers the components
from mlcls.models.classifiers import ImageClassifier
from mlcls.registry import MODELS


def build_model(cfg: dict, num_classes: int | None = None):
    """Build a model config; ``num_classes`` fills the head's when the config leaves it out."""
    return MODELS.build(cfg, num_classes=num_classes) if num_classes is not None else MODELS.build(cfg)


__all__ = ["ImageClassifier", "build_model"]
