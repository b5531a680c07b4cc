"""Synthetic defect families with exact masks, for the embedded benchmark (and held-out validation).

Each generator takes an RGB float image (H, W, 3) in [0, 1] and a numpy Generator and returns the
defective image and the boolean mask of exactly the pixels it changed.
"""

from collections.abc import Callable

import numpy as np
from skimage.draw import disk, polygon

DefectFn = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _blob_mask(shape: tuple[int, int], rng: np.random.Generator, r_min: float, r_max: float) -> np.ndarray:
    """An irregular star-convex blob away from the border."""
    h, w = shape
    radius = rng.uniform(r_min, r_max)
    cy, cx = rng.uniform(radius + 4, h - radius - 4), rng.uniform(radius + 4, w - radius - 4)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = radius * rng.uniform(0.6, 1.0, angles.size)
    mask = np.zeros(shape, dtype=bool)
    mask[polygon(cy + radii * np.sin(angles), cx + radii * np.cos(angles), shape)] = True
    return mask


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thick bright or dark curved stroke (quadratic Bezier)."""
    h, w = image.shape[:2]
    p0, p1, p2 = (rng.uniform([0.15 * h, 0.15 * w], [0.85 * h, 0.85 * w]) for _ in range(3))
    while np.linalg.norm(p2 - p0) < 0.35 * min(h, w):
        p2 = rng.uniform([0.15 * h, 0.15 * w], [0.85 * h, 0.85 * w])
    t = np.linspace(0, 1, 200)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    thickness = rng.uniform(0.018, 0.03) * min(h, w)
    mask = np.zeros((h, w), dtype=bool)
    for y, x in points:
        mask[disk((y, x), thickness, shape=(h, w))] = True
    out = image.copy()
    out[mask] = 0.95 if image.mean() < 0.5 else 0.05
    return out, mask


def stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A coloured, semi-transparent blob (liquid or rust stain)."""
    mask = _blob_mask(image.shape[:2], rng, 0.07 * image.shape[0], 0.14 * image.shape[0])
    colour = np.array([rng.uniform(0.5, 0.8), rng.uniform(0.15, 0.35), rng.uniform(0.0, 0.15)])
    out = image.copy()
    out[mask] = 0.35 * image[mask] + 0.65 * colour
    return out, mask


def contamination(
    image: np.ndarray, rng: np.random.Generator, foreign: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A blob of foreign material: another texture (or scrambled, inverted content) pasted in."""
    h, w = image.shape[:2]
    mask = _blob_mask((h, w), rng, 0.08 * h, 0.15 * h)
    source = foreign if foreign is not None else 1.0 - image[::-1, ::-1]
    out = image.copy()
    out[mask] = source[:h, :w][mask]
    return out, mask


DEFECT_FAMILIES: dict[str, DefectFn] = {"scratch": scratch, "stain": stain, "contamination": contamination}
