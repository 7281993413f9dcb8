"""Image and text encoders: two registries, filled by ``methods/_blocks``, and their factories.

An image encoder maps ``(B, C, H, W)`` to ``(B, feature_dim)`` and exposes ``feature_dim``.
``IMAGE_ENCODERS`` maps a name to a factory ``(in_chans, feature_dim, pretrained)``, like
timm's ``create_model`` maps a name to a registered constructor (Wightman,
https://github.com/huggingface/pytorch-image-models). Built in: ``small-cnn``, ``features``
(inputs that already are features) and ``timm``, which builds every name not registered
here as a timm model of that name.

A text encoder maps texts to ``(len(texts), t)`` float embeddings. ``TEXT_ENCODERS`` maps a
name to a factory ``()``, or, for a family spelled ``name:source``, ``(source)``. Built in:
``hashing``, ``minilm`` and ``hf:<model id or folder>``; ``auto`` picks the first of
``AUTO_TEXT_ENCODERS`` that can run here.

Third-party packages add entries through the entry-point groups ``bench.encoders`` and
``bench.text_encoders`` (as methods do through ``bench.methods``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from bench.errors import ConfigError, UnknownNameError
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.interface import Batch, DatasetInfo


TextEncoder = Callable[[list[str]], Tensor]

IMAGE_ENCODERS: Registry[Callable[..., nn.Module]] = Registry(
    "image encoder", builtin="methods._blocks.backbones", group="bench.encoders"
)
TEXT_ENCODERS: Registry[Callable[..., TextEncoder]] = Registry(
    "text encoder", builtin="methods._blocks.text", group="bench.text_encoders"
)
register_image_encoder = IMAGE_ENCODERS.register
register_text_encoder = TEXT_ENCODERS.register

TIMM = "timm"  # the image-encoder entry that builds any other name, given as ``model=``
AUTO = "auto"
AUTO_TEXT_ENCODERS = ("minilm", "hashing")  # what ``auto`` tries, in order


def create_encoder(
    name: str, in_chans: int, feature_dim: int = 64, pretrained: str | None = None
) -> nn.Module:
    """Build the image encoder ``name``: a registered one, else the timm model ``name``.

    ``pretrained``: None (random init), a local weights file, or ``hf-cache`` (timm's weights
    from the local Hugging Face cache); asking for weights that are not there is an error.
    """
    if name != TIMM and name in IMAGE_ENCODERS.names():
        return IMAGE_ENCODERS.entry(name).obj(in_chans, feature_dim, pretrained)
    return IMAGE_ENCODERS.entry(TIMM).obj(in_chans, feature_dim, pretrained, model=name)


def image_encoder_names() -> list[str]:
    """The registered image encoders a ``backbone`` may name (besides any timm model)."""
    return [name for name in IMAGE_ENCODERS.names() if name != TIMM]


def create_text_encoder(name: str) -> tuple[str, TextEncoder]:
    """(resolved name, encoder) of the text encoder ``name``; ``auto`` resolves to the first of
    ``AUTO_TEXT_ENCODERS`` whose factory does not raise a ``ConfigError`` here."""
    if name == AUTO:
        for candidate in AUTO_TEXT_ENCODERS[:-1]:
            try:
                return candidate, create_text_encoder(candidate)[1]
            except ConfigError:
                continue
        return create_text_encoder(AUTO_TEXT_ENCODERS[-1])
    base, colon, source = name.partition(":")
    if base not in TEXT_ENCODERS.names():
        valid = [
            f"{n}:<source>" if _takes_source(TEXT_ENCODERS.entry(n).obj) else n
            for n in TEXT_ENCODERS.names()
        ]
        raise UnknownNameError(
            f"unknown text encoder {name!r}: use {AUTO}, {', '.join(valid)} "
            "(hf:<source> is a Hugging Face model id or a local folder)"
        )
    factory = TEXT_ENCODERS.entry(base).obj
    if _takes_source(factory):
        if not source:
            raise ConfigError(f"text encoder {base!r} needs a source: write {base}:<source>")
        return name, factory(source)
    if colon:
        raise ConfigError(f"text encoder {base!r} takes no ':<source>': write {base}")
    return name, factory()


def _takes_source(factory: Callable[..., TextEncoder]) -> bool:
    return bool(inspect.signature(factory).parameters)


def zero_absent(features: Tensor, present: Tensor) -> Tensor:
    """Zero the rows of ``features`` (B, d) whose modality is absent (``present`` (B,))."""
    return features * present.to(features.dtype).unsqueeze(-1)


@dataclass(frozen=True)
class EncoderArgs:
    """The image-encoder hyper-parameters every method accepts (see ``Method.__init__``)."""

    backbone: str
    feature_dim: int
    pretrained: str | None

    def create(self, in_chans: int) -> nn.Module:
        return create_encoder(self.backbone, in_chans, self.feature_dim, self.pretrained)


class ModalityEncoders(nn.Module):
    """``encoders[m]`` maps modality m's images to (B, feature_dim).

    A zero image still gives a non-zero feature (biases, normalisation), so absent
    modalities are zeroed from the presence mask, never inferred from the pixels.
    """

    def __init__(
        self, info: DatasetInfo, args: EncoderArgs, modalities: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.modalities = (
            modalities if modalities is not None else tuple(range(info.num_modalities))
        )
        self.encoders = nn.ModuleList(args.create(info.channels[m]) for m in self.modalities)
        self.feature_dim = int(self.encoders[0].feature_dim)

    def forward(self, batch: Batch) -> list[Tensor]:
        return [
            zero_absent(encoder(batch.images[m]), batch.present[:, m])
            for m, encoder in zip(self.modalities, self.encoders, strict=True)
        ]
