"""The last validation's predictions, kept while the weights are those that made them.

Under the paper protocol the validation split is the test split, so the final validation has already scored the test
images with the final weights; the test that follows (``test_ckpt=last``) reads those predictions instead of scoring
the same images again. A batch is found by its image paths: a test of other images, other batches, or other weights
(a training step, a loaded checkpoint) scores afresh.
"""

from fod_lightning.models.base import AnomalyPrediction

MAX_BYTES = 512 * 2**20  # predictions kept at most; a larger validation is not kept (the test scores it again)


class ScoredValidation:
    """Predictions of the current weights' last validation epoch, per batch (keyed by the batch's image paths)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.batches: dict[tuple[str, ...], tuple[AnomalyPrediction, float]] = {}
        self.bytes = 0
        self.too_large = False
        self.reused = self.scored = 0  # test batches read here / scored, in the current test epoch

    def forget(self) -> None:
        """The weights change (a training step, a loaded checkpoint), or a new validation epoch begins."""
        self.batches.clear()
        self.bytes, self.too_large = 0, False

    def keep(self, paths: list[str], pred: AnomalyPrediction, seconds: float) -> None:
        """A validation batch's prediction and the seconds it took to score."""
        if self.too_large:
            return
        size = sum(t.numel() * t.element_size() for t in (pred.image_score, pred.anomaly_map))
        if self.bytes + size > self.max_bytes:
            self.forget()
            self.too_large = True
            return
        self.batches[tuple(paths)] = (pred, seconds)
        self.bytes += size

    def find(self, paths: list[str]) -> tuple[AnomalyPrediction, float] | None:
        """The prediction of a test batch of the same images, with the seconds its scoring took (None: score it)."""
        found = self.batches.get(tuple(paths))
        self.reused, self.scored = self.reused + (found is not None), self.scored + (found is None)
        return found

    def start_test(self) -> None:
        self.reused = self.scored = 0
