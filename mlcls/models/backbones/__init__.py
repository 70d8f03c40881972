from mlcls.models.backbones.alexnet import AlexNet
from mlcls.models.backbones.resnet import ResNet
from mlcls.models.backbones.timm_backbone import TimmBackbone
from mlcls.models.backbones.vgg import VGG

__all__ = ["AlexNet", "ResNet", "TimmBackbone", "VGG"]
