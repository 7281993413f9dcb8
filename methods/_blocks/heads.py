"""Small heads shared by the methods: the linear classifier, MLPs and KEDR's residual MLP block."""

from __future__ import annotations

import itertools

from torch import Tensor, nn


def linear_head(dim: int, classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Dropout then a linear layer: logits from a (B, dim) feature."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, classes))


class ResidualMLP(nn.Module):
    """x -> LayerNorm(x + W2 GELU(W1 x)), with hidden width d/2 (the released KEDR code's block)."""

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = hidden or max(dim // 2, 1)
        self.body = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.body(x))


def mlp(dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class ResidualClassifier(nn.Module):
    """Residual MLP block then a linear layer: KEDR's auxiliary / confidence head shape."""

    def __init__(self, dim: int, out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.block = ResidualMLP(dim, dropout=dropout)
        self.out = nn.Linear(dim, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.block(x))
