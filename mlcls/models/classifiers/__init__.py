"""ImageClassifier = backbone -> neck -> head (for a bag of images: backbone per instance ->
instance pooling per view -> views concatenated -> head)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from mlcls.datasets.bags import BagBatch, check_view_names
from mlcls.errors import ConfigError, DataError
from mlcls.models.protocols import Backbone, Head, Neck, check_part
from mlcls.registry import MODELS


@MODELS.register_module()
class ImageClassifier(nn.Module):
    """Builds its parts explicitly: the backbone first, then the head with ``in_channels`` taken
    from the backbone's ``out_channels`` (so configs need not repeat it).

    Args:
        backbone: backbone config (must expose ``out_channels``).
        head: head config; ``num_classes`` may be omitted when the caller passes it.
        neck: neck config; default ``GlobalAveragePooling``, or none for heads that read the
            feature map themselves (``spatial_input``: CSRA, ML-Decoder).
        num_classes: default for the head's ``num_classes`` (the builder passes the dataset's).
        label_stats: training label counts, handed to the head for its loss's ``auto`` weights.
        views: samples made of one bag per view (``[sagittal, coronal, axial]``, the dataset's
            ``views``): each view is pooled on its own (``neck``, e.g. ``InstancePooling``) and
            the pooled features are concatenated before the head (``in_channels`` = views x D).
        separate_backbones: one backbone per view instead of one shared by the views.
        instance_chunk: run the backbone over at most this many instances at a time: in
            evaluation this bounds the activations' memory for long series; in training it is the
            unit of activation checkpointing (BatchNorm then normalises each chunk by its own
            statistics, and a recomputed chunk updates the running statistics once more: prefer
            frozen or evaluation-mode norms, ``norm_eval``, for fine-tuning with it).
        checkpoint_instances: in training, recompute each chunk's activations in the backward
            pass instead of keeping them (torch.utils.checkpoint): long series fit in less memory
            for about a third more compute.
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        neck: dict | None = None,
        num_classes: int | None = None,
        label_stats: dict | None = None,
        views: list[str] | None = None,
        separate_backbones: bool = False,
        instance_chunk: int | None = None,
        checkpoint_instances: bool = False,
    ) -> None:
        super().__init__()
        try:
            self.views = check_view_names(views, "model.views") if views else None
        except DataError as e:
            raise ConfigError(str(e)) from None
        names = self.views or [""]
        if separate_backbones and not self.views:
            raise ConfigError("model.separate_backbones: needs model.views (one backbone per view)")
        if separate_backbones:
            self.backbones = nn.ModuleDict({v: MODELS.build(backbone) for v in names})
            self.backbone = self.backbones[names[0]]
        else:
            self.backbone = MODELS.build(backbone)
        check_part(self.backbone, Backbone, "model.backbone")
        self.separate_backbones = bool(separate_backbones)
        self.instance_chunk, self.checkpoint_instances = instance_chunk, bool(checkpoint_instances)
        d = self.backbone.out_channels
        defaults = {"in_channels": d * len(names), "label_stats": label_stats}
        if num_classes is not None:
            defaults["num_classes"] = num_classes
        self.head = MODELS.build(head, **defaults)
        check_part(self.head, Head, "model.head")
        spatial = self.head.spatial_input
        if self.views:  # each view pools its own bag (attention pooling has weights per view)
            if not neck or spatial:
                raise ConfigError("model.views: give a neck such as {type: InstancePooling, mode: max} and a head on vectors")
            self.view_necks = nn.ModuleDict({v: MODELS.build(neck, in_channels=d) for v in names})
            self.neck = self.view_necks[names[0]]
        else:
            default = nn.Identity() if spatial else MODELS.build({"type": "GlobalAveragePooling"})
            self.neck = MODELS.build(neck, in_channels=d) if neck else default
        if neck:
            check_part(self.neck, Neck, "model.neck")
        #: declared by the neck, not probed: a neck that pools bags makes a model of samples made of many images
        self.reads_bags = bool(neck) and self.neck.reads_bags
        if self.views and not self.reads_bags:
            raise ConfigError(
                f"model.views: the neck {type(self.neck).__name__} does not pool bags; use {{type: InstancePooling, mode: max}}"
            )

    def resolved_config(self, cfg: dict) -> dict:
        """This model's config with every value derived from the training labels written out as
        plain numbers (``pos_weight: auto`` -> the list in use, the powerset's combinations), so
        the model rebuilds from it without label statistics."""
        return {**cfg, "head": self.head.resolved_config(cfg["head"])}

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def bag_views(self) -> list[str] | None:
        """The views this model reads (``[""]``: one unnamed view, a bag pooled by ``InstancePooling``),
        or None for a model of single images."""
        return list(self.views) if self.views else [""] if self.reads_bags else None

    def check_input_size(self, side: int, where: str = "the input") -> None:
        """``side``: the smaller side of the images, in pixels. One clear error when images are smaller than the backbone takes (its ``min_input_size``),
        instead of a deep traceback from the first layer that runs out of pixels.

        Raises:
            ConfigError: naming the backbone, its smallest input and the size given.
        """
        need = self.backbone.min_input_size
        if need and side < need:
            raise ConfigError(
                f"model.backbone: {type(self.backbone).__name__} takes images of at least {need}x{need} px, "
                f"the smaller side of {where} is {side} px; add a Resize to the pipeline (e.g. {{type: Resize, size: [{need}, {need}]}}) "
                "or use a backbone that takes smaller images (ResNet)"
            )

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()):
            self.check_input_size(min(int(x.shape[-2]), int(x.shape[-1])), f"a batch of {x.shape[-2]}x{x.shape[-1]} images")
        return x

    def extract_feat(self, images: torch.Tensor | BagBatch) -> torch.Tensor:
        """images [B, 3, H, W] -> features [B, D] (or the map [B, D, h, w] for spatial heads);
        a :class:`BagBatch` -> [B, views x D]."""
        if isinstance(images, BagBatch):
            return self.bag_features(images)
        if self.views:
            raise ConfigError(f"this model reads bags of images with the views {self.views}, got a plain image batch")
        return self.neck(self.backbone(self._checked(images)))

    def bag_features(self, bags: BagBatch) -> torch.Tensor:
        """Each view's instances through the backbone (in chunks), pooled per bag, views concatenated."""
        names = self.views or [""]
        if set(bags.views) != set(names):
            raise ConfigError(f"the batch has the views {sorted(bags.views)}, the model {names}")
        if not self.reads_bags:
            raise ConfigError(
                "samples made of many images need model.neck: {type: InstancePooling, mode: max|mean|lse|attention|gated_attention}"
            )
        pooled = []
        for v in names:
            x, sizes = bags.views[v]
            backbone = self.backbones[v] if self.separate_backbones else self.backbone
            neck = self.view_necks[v] if self.views else self.neck
            pooled.append(neck(self._instance_features(backbone, x), sizes))
        return torch.cat(pooled, dim=1)

    @torch.no_grad()
    def instance_evidence(self, bags: BagBatch) -> list[dict]:
        """Which instances (slices) carried each sample's scores: per sample and view, a score per
        instance and class, and the attention weights for attention pooling.

        An instance's score is the head applied to the sample's pooled features with its view's
        part replaced by that instance's own features: the score the sample would get were that
        slice its view's only one (the usual instance-level read-out in multiple-instance
        learning). For max pooling the evidence slice of a class is the one whose read-out is
        highest; it is *not* a segmentation, nor a guarantee that other slices show nothing.

        Returns:
            one ``{view: {"scores": [S_v, C] probabilities, "attention": [S_v] or None}}`` per
            sample, in batch order (``""`` is the view of a dataset without named views).
        """
        names = self.views or [""]
        feats, pooled = {}, []
        for v in names:
            x, sizes = bags.views[v]
            backbone = self.backbones[v] if self.separate_backbones else self.backbone
            neck = self.view_necks[v] if self.views else self.neck
            feats[v] = (self._instance_features(backbone, x), sizes)
            pooled.append(neck(feats[v][0], sizes))
        pooled_all = torch.cat(pooled, dim=1)  # [B, V x D]
        d = pooled[0].shape[1]
        out: list[dict] = [{} for _ in range(pooled_all.shape[0])]
        for j, v in enumerate(names):
            h, sizes = feats[v]
            neck = self.view_necks[v] if self.views else self.neck
            weights = neck.last_weights if getattr(neck, "mode", "").endswith("attention") else None
            for b, part in enumerate(h.split(sizes.tolist())):
                x = pooled_all[b].expand(part.shape[0], -1).clone()
                x[:, j * d : (j + 1) * d] = part
                out[b][v] = {"scores": self.head.predict(x), "attention": None if weights is None else weights[b]}
        return out

    def predict_one_bag(self, *bags: torch.Tensor) -> torch.Tensor:
        """One sample's bags, one [S_v, 3, H, W] tensor per view in :attr:`views` order -> probabilities
        [1, C]. The same numbers as :meth:`predict` on a batch of that one sample, written without
        data-dependent shapes so that an export keeps every slice count free."""
        names = self.views or [""]
        pooled = []
        for v, x in zip(names, bags):
            backbone = self.backbones[v] if self.separate_backbones else self.backbone
            neck = self.view_necks[v] if self.views else self.neck
            pooled.append(neck.pool_one(self._instance_features(backbone, x)))
        return self.head.predict(torch.cat(pooled, dim=1))

    def _instance_features(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, D]: the backbone and global average pooling, ``instance_chunk`` at a time."""
        self._checked(x)
        chunk = self.instance_chunk or x.shape[0]

        def run(part: torch.Tensor) -> torch.Tensor:
            f = backbone(part)
            return f.mean(dim=(2, 3)) if f.dim() == 4 else f

        if x.shape[0] <= chunk and not (self.training and self.checkpoint_instances):
            return run(x)
        sizes = [min(chunk, x.shape[0] - i) for i in range(0, x.shape[0], chunk)]
        if len(sizes) > 1 and sizes[-1] == 1:  # BatchNorm in training needs two values: no chunk of one
            sizes[-2:] = [sizes[-2] + 1]
        parts = x.split(sizes)
        if self.training and self.checkpoint_instances and torch.is_grad_enabled():
            return torch.cat([checkpoint(run, part, use_reentrant=False) for part in parts])
        return torch.cat([run(part) for part in parts])

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor"):
        """One entry point, so DDP sees every call that needs gradient synchronisation.

        Args:
            images: [B, 3, H, W], or a :class:`BagBatch` of samples made of many images.
            targets: [B, C] (1 / 0 / -1 ignored), for ``mode='loss'``.
            mode: ``tensor`` -> logits [B, C]; ``loss`` -> ``{"loss": scalar}``;
                ``predict`` -> probabilities [B, C].
        """
        if mode == "tensor":
            return self.head(self.extract_feat(images))
        if mode == "loss":
            return self.loss(images, targets)
        if mode == "predict":
            return self.predict(images)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got '{mode}'")

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W], targets [B, C] (-1 = ignore) -> ``{"loss": scalar}``."""
        return self.head.loss(self.extract_feat(images), targets)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> probabilities [B, C]."""
        return self.head.predict(self.extract_feat(images))
