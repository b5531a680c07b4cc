"""The FOD model: frozen backbone, one I2Correlation transformer per stage, anomaly scoring."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet
from fod_lightning.models.fod.attention import CorrelationAttention
from fod_lightning.models.fod.correlation import grid_offsets
from fod_lightning.models.fod.embedding import Embedding2D
from fod_lightning.models.fod.encoder import BRANCHES, BranchDiscrepancy, Encoder, EncoderLayer, LayerSettings
from fod_lightning.models.fod.memory import PatchMemory
from fod_lightning.models.fod.reference import ReferenceFeatures
from fod_lightning.models.fod.retrieval import ReferenceMemory
from fod_lightning.models.fod.scoring import SCORES, STAGE_MIXES, anomaly_map, image_scores, patch_scores


@dataclass
class StageOutput:
    """Forward result of one stage; L = h * w tokens in row-major order."""

    tokens: torch.Tensor  # (B, L, C) pooled backbone tokens, also the reconstruction target
    reconstruction: torch.Tensor  # (B, L, C)
    intra: BranchDiscrepancy  # per layer (B, L) row statistics; empty when off or not asked for
    inter: BranchDiscrepancy
    grid: tuple[int, int]  # (h, w)


class FODStage(nn.Module):
    """One stage's transformer; parameter names match the authors' per-stage ``FOD`` module."""

    def __init__(
        self,
        in_channels: int,
        d_model: int,
        n_heads: int,
        depth: int,
        ffn_ratio: int,
        dropout: float,
        with_intra: bool,
        with_inter: bool,
        attention_out_proj: bool,
        block_elements: int | None = None,
        compiled: bool = False,
        keep_mib: float = 0.0,
    ) -> None:
        super().__init__()
        self.with_intra, self.with_inter = with_intra, with_inter
        self.embedding = Embedding2D(in_channels, d_model, dropout)
        if with_inter:
            self.ref_embedding = Embedding2D(in_channels, d_model, dropout)
        settings = LayerSettings(d_model, n_heads, ffn_ratio * d_model, dropout, attention_out_proj, block_elements,
                                 compiled, with_intra, with_inter, keep_mib)  # fmt: skip
        layers = [EncoderLayer(settings) for _ in range(depth)]
        self.encoder = Encoder(layers, d_model)
        self.projection = nn.Linear(d_model, in_channels)
        self._freeze_unused(with_intra, with_inter, attention_out_proj)
        self._offsets: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _freeze_unused(self, with_intra: bool, with_inter: bool, attention_out_proj: bool) -> None:
        """Parameters the forward never uses (kept for the authors' state-dict layout) are frozen, so
        the optimizer skips them and DDP needs no unused-parameter search."""
        for layer in self.encoder.encode_layers:
            unused = (
                []
                if attention_out_proj
                else [layer.self_attention.out_projection, layer.cross_attention.out_projection]
            )
            if with_inter and not with_intra:
                unused.append(layer.self_attention)
            if not with_inter:
                unused.append(layer.cross_attention)
            if not (with_intra or with_inter):
                unused.append(layer.self_attention.sigma_projection)
            for module in unused:
                module.requires_grad_(False)

    def offsets(self, grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared grid offsets ((L, h), (L, w)) of the Gaussian targets, built once per grid and device."""
        key = (grid, device)
        if key not in self._offsets:
            self._offsets[key] = grid_offsets(grid, device)
        return self._offsets[key]

    def forward(
        self,
        tokens: torch.Tensor,
        grid: tuple[int, int],
        reference: torch.Tensor | None,
        statistics: frozenset[str] = BRANCHES,
    ) -> StageOutput:
        """tokens (B, L, C); reference (1, L, C) raw reference tokens (broadcast over the batch);
        ``statistics``: branches whose discrepancy/entropy rows are computed (training needs both)."""
        if tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"{tokens.shape[1]} tokens do not fill a {grid} grid")
        x = self.embedding(tokens, grid)
        ref = self.ref_embedding(reference, grid) if self.with_inter else None
        offsets = self.offsets(grid, tokens.device)
        x, intra, inter = self.encoder(x, ref, offsets, statistics)
        return StageOutput(tokens, self.projection(x), intra, inter, grid)


class FOD(AnomalyNet):
    """Focus the Discrepancy (Yao et al., ICCV 2023) as a pure torch model.

    Args:
        backbone: frozen feature extractor; one transformer is built per returned stage.
        d_models: transformer width per stage (authors: 256, 512).
        n_heads, depth, ffn_ratio, dropout: per-stage transformer shape (8, 3, 4, 0.0).
        with_intra, with_inter: I2Correlation branches (ablations of reference section 2.4).
        attention_out_proj: apply the attention output projection the authors compute but discard.
        score: patch score; ``auto`` follows the authors (inter if the inter branch is on, else intra,
            else reconstruction only).
        blur_sigma: Gaussian sigma (pixels) smoothing the map before the image score (max).
        block_elements: size of the fused correlation's blocks (None: chosen by device; see
            :mod:`fod_lightning.models.fod.correlation`).
        compile_correlation: run the fused correlation's block kernels through ``torch.compile``.
        keep_logs_mib: while training, the MiB of logarithms each correlation call keeps for its backward pass instead
            of recomputing them (the same gradients, bit for bit; 8% of a CPU step at 256 px); 0: none kept.
            The default, 64, keeps all of them at 256 px and batch 1 (about 0.4 GiB in all) and part of them above.
        memory_weight: w in [0, 1]: each stage's patch score becomes ``fod ** (1 - w) * knn ** w``, knn being the
            distance of the patch's pooled backbone feature to the nearest normal training patch of that stage (a
            memory of normal patches beside the mean reference); 0 (default) is the authors' score. The product
            of powers keeps each score's scale out of the ranking.
        memory_ratio: the fraction of the training patches the memory keeps (its greedy k-center coreset).
        memory_max_patches: at most this many patches per stage in the memory (a coreset of that many where
            ``memory_ratio`` would keep more), so that its size and the scoring time stay bounded on large training
            sets; None: no bound.
        stage_mix: how the stages' maps combine: ``mean`` (the authors') or ``geometric`` (scale-free).
        reference_mode: ``mean`` (the authors': the positional mean of the training images) or, for one model over
            many categories, ``retrieved`` / ``clustered`` (:mod:`fod_lightning.models.fod.retrieval`).
        reference_neighbours, reference_clusters: of the ``retrieved`` and ``clustered`` references.
    """

    def __init__(
        self,
        backbone: FeatureExtractor,
        d_models: tuple[int, ...] = (256, 512),
        n_heads: int = 8,
        depth: int = 3,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        with_intra: bool = True,
        with_inter: bool = True,
        attention_out_proj: bool = False,
        score: str = "auto",
        blur_sigma: float = 4.0,
        block_elements: int | None = None,
        compile_correlation: bool = False,
        keep_logs_mib: float = 64.0,
        memory_weight: float = 0.0,
        memory_ratio: float = 1.0,
        memory_max_patches: int | None = None,
        stage_mix: str = "mean",
        reference_mode: str = "mean",
        reference_neighbours: int = 5,
        reference_clusters: int = 8,
    ) -> None:
        super().__init__()
        self.config = {  # plain-typed: rebuilds this model (see from_config), saved in checkpoints
            "backbone": getattr(backbone, "config", None), "d_models": [int(d) for d in d_models],
            "n_heads": int(n_heads), "depth": int(depth), "ffn_ratio": int(ffn_ratio), "dropout": float(dropout),
            "with_intra": bool(with_intra), "with_inter": bool(with_inter),
            "attention_out_proj": bool(attention_out_proj), "score": str(score), "blur_sigma": float(blur_sigma),
            "block_elements": block_elements, "compile_correlation": bool(compile_correlation),
            "keep_logs_mib": float(keep_logs_mib),
            "memory_weight": float(memory_weight), "memory_ratio": float(memory_ratio),
            "memory_max_patches": None if memory_max_patches is None else int(memory_max_patches),
            "stage_mix": str(stage_mix),
            "reference_mode": str(reference_mode), "reference_neighbours": int(reference_neighbours),
            "reference_clusters": int(reference_clusters),
        }  # fmt: skip
        if stage_mix not in STAGE_MIXES:
            raise ConfigError(f"model.net.stage_mix={stage_mix!r} is unknown; use one of {STAGE_MIXES}")
        if not 0.0 <= memory_weight <= 1.0:
            raise ConfigError(f"model.net.memory_weight={memory_weight} must be in [0, 1] (0: the authors' score)")
        if keep_logs_mib < 0:
            raise ConfigError(f"model.net.keep_logs_mib={keep_logs_mib} must be >= 0 (0: logarithms recomputed)")
        if not 0.0 < memory_ratio <= 1.0:
            raise ConfigError(f"model.net.memory_ratio={memory_ratio} must be in (0, 1]")
        if memory_max_patches is not None and memory_max_patches < 1:
            raise ConfigError(f"model.net.memory_max_patches={memory_max_patches} must be >= 1 (null: no bound)")
        if len(d_models) != len(backbone.channels):
            raise ConfigError(f"model.d_models has {len(d_models)} widths for {len(backbone.channels)} backbone stages")
        if score not in SCORES:
            raise ConfigError(f"model.score={score!r} is unknown; use one of {SCORES}")
        if score == "auto":
            score = "inter" if with_inter else "intra" if with_intra else "rec"
        if (score == "inter" and not with_inter) or (score == "intra" and not with_intra):
            raise ConfigError(f"model.score={score!r} needs the {score} branch (with_{score}=true)")
        self.score, self.blur_sigma = score, blur_sigma
        self.backbone = backbone
        self.stages = nn.ModuleList(
            FODStage(c, d, n_heads, depth, ffn_ratio, dropout, with_intra, with_inter, attention_out_proj,
                     block_elements, compile_correlation, keep_logs_mib)
            for c, d in zip(backbone.channels, d_models)
        )  # fmt: skip
        self.reference = ReferenceFeatures(len(self.stages))
        self.with_inter = with_inter
        self.memory_weight = float(memory_weight)
        self.memory = None
        if self.memory_weight > 0:
            self.memory = PatchMemory(len(self.stages), memory_ratio, self.config["memory_max_patches"])
        self.retrieval = None  # the authors' one mean reference
        if reference_mode != "mean":
            self.retrieval = ReferenceMemory(len(self.stages), reference_mode, reference_neighbours, reference_clusters)

    def pooled_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone maps smoothed by 3x3 average pooling (count_include_pad); each (B, C, h, w)."""
        return [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.backbone(images)]

    def forward(self, images: torch.Tensor, statistics: frozenset[str] = BRANCHES) -> list[StageOutput]:
        """images (B, 3, H, W) normalised -> one StageOutput per stage."""
        return self.forward_features(self.pooled_features(images), statistics)

    def forward_features(self, maps: list[torch.Tensor], statistics: frozenset[str] = BRANCHES) -> list[StageOutput]:
        """Pooled backbone maps, one (B, C, h, w) per stage (see :meth:`pooled_features`) -> StageOutputs."""
        if len(maps) != len(self.stages):
            raise ValueError(f"{len(maps)} feature maps for {len(self.stages)} stages")
        found = self.references_of(maps)
        return [self.forward_stage(i, stage_maps, statistics, found) for i, stage_maps in enumerate(maps)]

    def references_of(self, maps: list[torch.Tensor]) -> torch.Tensor | None:
        """Which retrieved references a batch of per-stage pooled maps uses, (B, k) (None: the one mean reference).
        A training image does not retrieve itself while the model trains."""
        if self.retrieval is None or not self.with_inter:
            return None
        return self.retrieval.nearest(maps, exclude_self=self.training)

    def forward_stage(self, i: int, maps: torch.Tensor, statistics: frozenset[str] = BRANCHES,
                      references: torch.Tensor | None = None) -> StageOutput:  # fmt: skip
        """Stage ``i`` on its pooled backbone map (B, C, h, w); ``references``: :meth:`references_of` the batch."""
        grid = (maps.shape[2], maps.shape[3])
        tokens = maps.flatten(2).transpose(1, 2)  # (B, L, C) row-major
        if not self.with_inter:
            reference = None
        elif references is not None:
            reference = self.retrieval.tokens(i, references).to(tokens.dtype)
        else:
            reference = self.reference.tokens(i)
        if reference is not None and reference.shape[1] != tokens.shape[1]:
            raise ConfigError(
                f"reference features of stage {i} have {reference.shape[1]} tokens but the input gives "
                f"{tokens.shape[1]}: the model was fitted at another image size"
            )
        return self.stages[i](tokens, grid, reference, statistics)

    def patch_scores(self, out: StageOutput) -> torch.Tensor:
        """Anomaly score per patch (B, L) of one stage (reference section 5)."""
        return patch_scores(self.score, out.reconstruction, out.tokens, out.intra, out.inter)

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The export-shaped forward: normalised images (B, 3, H, W) -> (image_score (B,), anomaly_map
        (B, H, W)). Evaluation, ``predict`` and the exported model all call this.

        Only the scoring branch computes its row statistics; the other runs as plain attention.
        """
        statistics = frozenset({self.score}) & BRANCHES
        outputs = self.forward(images, statistics)
        # float32 at least (bf16 / half under autocast), float64 kept: the authors' arithmetic in a float64 model
        maps = [self.with_memory(i, out, at_least_float32(self.patch_scores(out))).view(-1, *out.grid)
                for i, out in enumerate(outputs)]  # fmt: skip
        amap = anomaly_map(maps, tuple(images.shape[-2:]), self.config["stage_mix"])
        return image_scores(amap, self.blur_sigma), amap

    def with_memory(self, i: int, out: StageOutput, scores: torch.Tensor) -> torch.Tensor:
        """Stage ``i``'s patch scores (B, L), combined with the patch memory's distances when it is on."""
        if self.memory is None:
            return scores
        w = self.memory_weight
        knn = at_least_float32(self.memory.distances(i, out.tokens)).clamp_min(0)
        return scores.clamp_min(0) ** (1 - w) * knn**w

    @contextmanager
    def export_mode(self, example: torch.Tensor | None = None) -> Iterator[None]:
        """The scoring branch on plain tensor operations (the fused kernel's autograd.Function cannot be traced). A
        forward of ``example`` first fills the per-grid caches (position codes), so that they are constants of the
        export. torch.export's note that the diagnostic sigma statistics are assigned while tracing is silenced: they
        are not outputs."""
        if example is not None:
            with torch.no_grad():
                self.score_images(example)
        modules = [m for m in self.modules() if isinstance(m, CorrelationAttention)]
        before = [m.fused for m in modules]
        self.use_fused_correlation(False)
        if self.memory is not None:
            self.memory.chunk_queries = False
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"The tensor attributes .*last_sigma_stats")
                yield
        finally:
            for module, fused in zip(modules, before):
                module.fused = fused
            if self.memory is not None:
                self.memory.chunk_queries = True

    def use_fused_correlation(self, fused: bool) -> None:
        """``False``: the scoring branch materialises its correlations with plain tensor operations
        (for ONNX export, which cannot trace the fused kernel's custom autograd function)."""
        for module in self.modules():
            if isinstance(module, CorrelationAttention):
                module.fused = fused


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))
