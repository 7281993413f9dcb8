"""Built-in image encoders of ``bench.encoders.IMAGE_ENCODERS``: a small CNN for the 64 px
synthetic default, precomputed features, timm models by name for real sizes.

Every encoder maps ``(B, C, H, W)`` to ``(B, feature_dim)`` and exposes ``feature_dim``.
timm models are built with ``num_classes=0`` (pooled features), as in timm's own
feature-extraction recipe (Wightman, https://github.com/huggingface/pytorch-image-models).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from torch import nn

from bench.encoders import TIMM, image_encoder_names, register_image_encoder
from bench.errors import ConfigError


class SmallCNN(nn.Module):
    """Four stride-2 3x3 conv blocks (BatchNorm, ReLU), global average pooling, linear.

    About 0.1 M parameters; sized so that a whole grid runs on a laptop CPU.
    """

    def __init__(self, in_chans: int, feature_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        chans = [in_chans, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(chans[-1], feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=(2, 3)))


class TimmEncoder(nn.Module):
    """A timm backbone with its classifier removed; ``feature_dim`` is its pooled width.

    ``pretrained``: None (random init), a local weights file, or ``hf-cache`` for timm's
    default weights from the local Hugging Face cache. Asking for weights that are not
    there is an error, never a silent random init.
    """

    def __init__(self, name: str, in_chans: int, pretrained: str | None = None) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ConfigError(
                f"unknown backbone {name!r}: use {', '.join(map(repr, image_encoder_names()))} "
                "or a timm model name (see timm.list_models())"
            )
        kwargs = {"num_classes": 0, "in_chans": in_chans}
        if pretrained == "hf-cache":
            self.model = _from_hf_cache(name, kwargs)
        elif pretrained:
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"pretrained checkpoint {str(path)!r} does not exist: pass the path of a "
                    "local weights file, or 'hf-cache' (no downloads happen here)"
                )
            self.model = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
        else:
            self.model = timm.create_model(name, pretrained=False, **kwargs)
        self.feature_dim = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _from_hf_cache(name: str, kwargs: dict) -> nn.Module:
    import timm

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # huggingface_hub raises several kinds when offline
        raise ConfigError(
            f"pretrained weights of {name!r} are not in the local Hugging Face cache: on a "
            f"machine with internet run timm.create_model({name!r}, pretrained=True), copy "
            "~/.cache/huggingface here, or pass the weights file as pretrained=PATH"
        ) from err
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


class PrecomputedFeatures(nn.Module):
    """Inputs that already are features (B, feature_dim): frozen-backbone grids, profiling."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_image_encoder("small-cnn")
def small_cnn(in_chans: int, feature_dim: int, pretrained: str | None) -> SmallCNN:
    if pretrained:
        raise ConfigError("small-cnn has no pretrained weights: drop 'pretrained'")
    return SmallCNN(in_chans, feature_dim)


@register_image_encoder("features")
def precomputed_features(
    in_chans: int, feature_dim: int, pretrained: str | None
) -> PrecomputedFeatures:
    return PrecomputedFeatures(feature_dim)


@register_image_encoder(TIMM)
def timm_encoder(
    in_chans: int, feature_dim: int, pretrained: str | None, *, model: str
) -> TimmEncoder:
    """The timm model ``model``; its ``feature_dim`` is the model's own pooled width."""
    return TimmEncoder(model, in_chans, pretrained)
