"""The contract between the harness and every method.

A method sees a :class:`Batch` (images and a presence mask, never labels) in ``forward``;
labels enter only ``loss``. Evaluation calls ``forward`` in eval mode under ``no_grad``, so
a test-time label leak (as in the released KEDR code) cannot happen by construction.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from bench.dropout import ModalityDropout
from bench.encoders import EncoderArgs, ModalityEncoders
from bench.errors import ConfigError
from bench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What a method may know about its dataset: names and shapes, no samples."""

    name: str
    classes: tuple[str, ...]
    modalities: tuple[str, ...]
    channels: tuple[int, ...]
    image_size: int
    priors: dict[str, dict[str, str]] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)


@dataclass(frozen=True)
class Batch:
    """What a method sees, in training and at test. Absent images are zeros.

    ``undropped`` is set in training only: the same samples before the stage's
    training-time modality dropout (:mod:`bench.dropout`), i.e. with every modality the
    missingness protocol left present (a teacher reads it to see what its student lacks).
    It is None at evaluation, and it never holds a modality the protocol made absent.
    """

    images: tuple[Tensor, ...]  # one (B, C_m, H, W) tensor per modality
    present: Tensor  # (B, M) bool: which modalities each sample has
    undropped: Batch | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return int(self.present.shape[0])


@dataclass
class Output:
    """A method's forward result.

    ``confidences`` holds per-sample branch confidences (B,) when a method has them
    (KEDR's c_1, c_2, c_s); they are saved with the predictions for the density figures.
    ``extras`` carries whatever ``loss`` needs (features, auxiliary logits).
    """

    logits: Tensor  # (B, K)
    confidences: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One phase of multi-stage training (e.g. a teacher before its student).

    ``epochs`` is a fraction of the cell's epoch budget; ``complete_only`` trains on
    samples that have every modality; ``modality_dropout`` is the stage's training-time
    modality dropout (scheme and warm-up, :mod:`bench.dropout`), applied by the training
    loop to the training batches only.
    """

    name: str
    epochs: float = 1.0
    complete_only: bool = False
    modality_dropout: ModalityDropout | None = None


class Method(nn.Module, abc.ABC):
    """Base class of every method. Subclasses set ``summary`` and ``citation``.

    Every method accepts the image-encoder hyper-parameters declared here (frozen-backbone
    grids and ``hparams.*.backbone=...`` set them on any method): a subclass takes its own
    hyper-parameters, passes ``**encoder`` on to this constructor and builds its per-modality
    encoders with :meth:`modality_encoders`. ``backbone`` names an entry of
    ``bench.encoders.IMAGE_ENCODERS`` or a timm model; ``pretrained`` is None, a local weights
    file or ``hf-cache``.
    """

    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    # Bump when a change alters what the method computes: from 2 on the cell hash holds it,
    # so a rerun trains the new code instead of resuming runs of the old one.
    version: ClassVar[int] = 1

    def __init__(
        self,
        info: DatasetInfo,
        *,
        backbone: str = "small-cnn",
        feature_dim: int = 64,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.info = info
        self.encoder_args = EncoderArgs(backbone, feature_dim, pretrained)
        self.stage = "main"

    def modality_encoders(self, modalities: tuple[int, ...] | None = None) -> ModalityEncoders:
        """One ``encoder_args`` encoder per modality (or per listed modality index)."""
        return ModalityEncoders(self.info, self.encoder_args, modalities)

    @abc.abstractmethod
    def forward(self, batch: Batch) -> Output:
        """Logits for every sample of ``batch``; must use ``batch.present`` for missingness."""

    def loss(self, out: Output, batch: Batch, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss and its named parts (for logging). Default: cross-entropy."""
        value = nn.functional.cross_entropy(out.logits, y)
        return value, {"ce": float(value.detach())}

    def after_backward(self) -> dict[str, float]:
        """Named values known only once ``loss.backward()`` has run (e.g. an implicit
        backward solver's steps), logged with the loss parts. Default: none."""
        return {}

    def stages(self) -> list[Stage]:
        return [Stage("main")]

    def set_stage(self, name: str) -> None:
        self.stage = name

    def inference_modules(self) -> list[nn.Module]:
        """Modules used at inference (for the train-vs-inference parameter count)."""
        return [self]

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Optuna search space over this method's own hyper-parameters."""
        return {}


METHODS: Registry[type[Method]] = Registry(
    "method", base=Method, builtin="methods", group="bench.methods"
)
register_method = METHODS.register


NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def hparam_names(method_cls: type[Method]) -> list[str]:
    """Keyword arguments a method accepts besides ``info``: those of its constructor and, when
    it passes ``**kwargs`` on, of its bases' (``Method``'s shared encoder ones first)."""
    chunks = []
    for cls in method_cls.__mro__:
        init = vars(cls).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        chunks.append(
            [p.name for p in params if p.kind in NAMED and p.name not in ("self", "info")]
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(dict.fromkeys(name for chunk in reversed(chunks) for name in chunk))


def build_method(full_name: str, info: DatasetInfo, hparams: dict[str, Any]) -> Method:
    """Instantiate ``name[:variant]`` with the variant's fixed arguments and ``hparams``."""
    cls, fixed = METHODS.resolve(full_name)
    check_hparams(full_name, hparams)
    return cls(info, **{**hparams, **fixed})


def check_hparams(full_name: str, hparams: dict[str, Any]) -> None:
    cls, fixed = METHODS.resolve(full_name)
    valid = hparam_names(cls)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ConfigError(
            f"{full_name} has no hyper-parameter {', '.join(map(repr, unknown))}: "
            f"valid ones are {', '.join(valid) or 'none'}"
        )
    clash = sorted(set(hparams) & set(fixed))
    if clash:
        raise ConfigError(
            f"{full_name} fixes {', '.join(clash)} itself: drop them from the hyper-parameters"
        )


__all__ = [
    "METHODS",
    "Batch",
    "DatasetInfo",
    "Method",
    "Output",
    "Stage",
    "build_method",
    "check_hparams",
    "hparam_names",
    "register_method",
]
