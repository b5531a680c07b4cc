"""Speed and memory benchmark: the lean FOD against a straightforward implementation of the authors'
structure, side by side in one process (``python -m fod_lightning.bench``)."""
