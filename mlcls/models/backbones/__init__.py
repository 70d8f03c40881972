from mlcls.models.backbones.resnet import ResNet
from mlcls.models.backbones.vgg import VGG

__all__ = ["ResNet", "VGG"]
