"""fod_lightning: FOD (Focus the Discrepancy, ICCV 2023) as a Lightning + Hydra experiment framework."""

__version__ = "0.1.0"
