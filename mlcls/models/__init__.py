from mlcls.models import backbones, heads, necks  # noqa: F401 - registers the components
from mlcls.models.classifiers import ImageClassifier
from mlcls.registry import MODELS


def build_model(cfg: dict, num_classes: int | None = None, label_stats: dict | None = None):
    """Build a model config; ``num_classes`` fills the head's when the config leaves it out and
    ``label_stats`` (training label counts) reaches the loss for its ``auto`` weights."""
    defaults = {k: v for k, v in {"num_classes": num_classes, "label_stats": label_stats}.items() if v is not None}
    return MODELS.build(cfg, **defaults)


__all__ = ["ImageClassifier", "build_model"]
