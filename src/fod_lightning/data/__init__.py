"""Datamodules: one per benchmark, sharing sample tables, joint transforms and the Batch container."""
