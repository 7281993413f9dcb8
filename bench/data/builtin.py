"""The built-in dataset adapters: importing this module registers each of them."""

from bench.data import csv_manifest, derm7pt, fairvision, mmc_amd, synthetic_retina

__all__ = ["csv_manifest", "derm7pt", "fairvision", "mmc_amd", "synthetic_retina"]
