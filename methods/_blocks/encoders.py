"""One image encoder per modality, with absent modalities' features zeroed by ``present``."""

from __future__ import annotations

from torch import Tensor, nn

from bench.interface import Batch, DatasetInfo, zero_absent
from methods._blocks.backbones import create_encoder


class ModalityEncoders(nn.Module):
    """``encoders[m]`` maps modality m's images to (B, feature_dim).

    A zero image still gives a non-zero feature (biases, normalisation), so absent
    modalities are zeroed from the presence mask, never inferred from the pixels.
    """

    def __init__(
        self,
        info: DatasetInfo,
        backbone: str = "small-cnn",
        feature_dim: int = 64,
        pretrained: str | None = None,
        modalities: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = (
            modalities if modalities is not None else tuple(range(info.num_modalities))
        )
        self.encoders = nn.ModuleList(
            create_encoder(backbone, info.channels[m], feature_dim, pretrained)
            for m in self.modalities
        )
        self.feature_dim = int(self.encoders[0].feature_dim)

    def forward(self, batch: Batch) -> list[Tensor]:
        return [
            zero_absent(encoder(batch.images[m]), batch.present[:, m])
            for m, encoder in zip(self.modalities, self.encoders, strict=True)
        ]
