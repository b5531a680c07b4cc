"""Which parameters each objective reaches, and the summed-backward equivalence."""

import copy

import pytest
import torch

from fod_lightning.models.fod.losses import StageLosses, phase_objectives, stage_losses, training_objective
from fod_lightning.models.fod.model import FODStage

GRID = (3, 4)


def tiny_stage(depth=1, seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(in_channels=6, d_model=8, n_heads=2, depth=depth, ffn_ratio=2, dropout=0.0,
                with_intra=True, with_inter=True, attention_out_proj=False)  # fmt: skip
    return FODStage(**(args | kwargs)).double()


def inputs(seed=0, batch=2, channels=6):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, GRID[0] * GRID[1], channels, generator=g, dtype=torch.float64)
    reference = torch.randn(1, GRID[0] * GRID[1], channels, generator=g, dtype=torch.float64)
    return tokens, reference


def reached(stage, term):
    """Names of parameter tensors that receive a non-zero gradient from ``term``."""
    names, params = zip(*((n, p) for n, p in stage.named_parameters() if p.requires_grad))
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return {n for n, g in zip(names, grads) if g is not None and g.abs().max() > 0}


def test_each_objective_reaches_exactly_its_parameters():
    stage = tiny_stage(depth=1)
    tokens, reference = inputs()
    out = stage(tokens, GRID, reference)
    losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
    layer = "encoder.encode_layers.0"
    emb = {"embedding.project_embedding.project.weight", "embedding.project_embedding.project.bias"}
    ref = {"ref_embedding.project_embedding.project.weight", "ref_embedding.project_embedding.project.bias"}

    def attn(branch, *parts):
        return {f"{layer}.{branch}.{p}_projection.{wb}" for p in parts for wb in ("weight", "bias")}

    # Target phase: only the sigma head and everything upstream of the layer input x.
    assert reached(stage, losses.intra_tgt) == emb | attn("self_attention", "sigma")
    assert reached(stage, losses.inter_tgt) == emb | attn("cross_attention", "sigma")
    # Correlation phase: the correlation (Q, K, and what feeds them), never the sigma head.
    assert reached(stage, losses.intra_corr) == emb | attn("self_attention", "query", "key")
    assert reached(stage, losses.intra_ent) == emb | attn("self_attention", "query", "key")
    assert reached(stage, losses.inter_corr) == emb | ref | attn("cross_attention", "query", "key")
    assert reached(stage, losses.inter_ent) == emb | ref | attn("cross_attention", "query", "key")
    # Reconstruction reaches neither sigma head, nor Q/K... only through the attention outputs.
    rec = reached(stage, losses.rec)
    assert not rec & (attn("self_attention", "sigma") | attn("cross_attention", "sigma"))
    assert {"projection.weight", f"{layer}.ffn.fc1.weight", f"{layer}.self_attention.value_projection.weight"} <= rec
    # The discarded output projection is reached by nothing (the authors' default), so it is frozen.
    assert not any("out_projection" in n for n in rec)
    frozen = {n for n, p in stage.named_parameters() if not p.requires_grad}
    assert frozen == {
        f"{layer}.{b}.out_projection.{wb}" for b in ("self_attention", "cross_attention") for wb in ("weight", "bias")
    }


def test_signs_of_the_two_objectives_follow_the_reference():
    values = dict(rec=1.0, intra_corr=2.0, intra_tgt=3.0, intra_ent=5.0, inter_corr=7.0, inter_tgt=11.0, inter_ent=13.0)
    losses = StageLosses(**{k: torch.tensor(v) for k, v in values.items()})
    loss1, loss2 = phase_objectives(losses, lambda1=0.5, lambda2=0.25)
    # loss1 = rec + l1 intra_tgt - l1 inter_tgt
    # loss2 = rec - l1 intra_corr - l2 intra_ent + l1 inter_corr + l2 inter_ent
    assert loss1.item() == 1.0 + 0.5 * 3.0 - 0.5 * 11.0
    assert loss2.item() == 1.0 - 0.5 * 2.0 - 0.25 * 5.0 + 0.5 * 7.0 + 0.25 * 13.0


@pytest.mark.parametrize(("with_intra", "with_inter"), [(True, False), (False, True), (False, False)])
def test_ablations_freeze_exactly_the_unused_parameters(with_intra, with_inter):
    stage = tiny_stage(depth=1, with_intra=with_intra, with_inter=with_inter)
    tokens, reference = inputs()
    out = stage(tokens, GRID, reference)
    losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
    total = sum(phase_objectives(losses, 0.5, 0.5))
    used = reached(stage, total)
    trainable = {n for n, p in stage.named_parameters() if p.requires_grad}
    # every trainable parameter gets a gradient (the key bias only in theory: softmax cancels it)
    assert trainable - used <= {"encoder.encode_layers.0.self_attention.key_projection.bias",
                                "encoder.encode_layers.0.cross_attention.key_projection.bias"}  # fmt: skip


def test_target_phase_reaches_earlier_layers_but_not_the_own_correlation():
    stage = tiny_stage(depth=2)
    tokens, reference = inputs()
    out = stage(tokens, GRID, reference)
    losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
    names = reached(stage, losses.intra_tgt)
    assert "encoder.encode_layers.0.self_attention.query_projection.weight" in names  # upstream of x_1
    assert "encoder.encode_layers.1.self_attention.query_projection.weight" not in names
    assert "encoder.encode_layers.1.self_attention.sigma_projection.weight" in names


def test_out_projection_switch_is_applied():
    tokens, reference = inputs()
    names = reached(stage := tiny_stage(attention_out_proj=True), stage_losses(
        (o := stage(tokens, GRID, reference)).reconstruction, o.tokens, o.intra, o.inter).rec)  # fmt: skip
    assert "encoder.encode_layers.0.self_attention.out_projection.weight" in names


def authors_step(stages, optimizer, batches, l1=0.5, l2=0.5):
    """The reference procedure: per stage zero grads, backward loss1 (retain), backward loss2, step."""
    grads = {}
    for i, (stage, (tokens, reference)) in enumerate(zip(stages, batches)):
        optimizer.zero_grad()
        out = stage(tokens, GRID, reference)
        loss1, loss2 = phase_objectives(stage_losses(out.reconstruction, out.tokens, out.intra, out.inter), l1, l2)
        loss1.backward(retain_graph=True)
        loss2.backward()
        grads |= {f"{i}.{n}": p.grad.clone() for n, p in stage.named_parameters() if p.grad is not None}
        optimizer.step()
    return grads


def summed_step(stages, optimizer, batches, l1=0.5, l2=0.5):
    """Ours: one backward of (loss1 + loss2) summed over stages, one step."""
    optimizer.zero_grad()
    total = 0
    for stage, (tokens, reference) in zip(stages, batches):
        out = stage(tokens, GRID, reference)
        total = total + sum(
            phase_objectives(stage_losses(out.reconstruction, out.tokens, out.intra, out.inter), l1, l2)
        )
    total.backward()
    grads = {
        f"{i}.{n}": p.grad.clone() for i, s in enumerate(stages) for n, p in s.named_parameters() if p.grad is not None
    }
    optimizer.step()
    return grads


def test_summed_backward_equals_authors_two_backward_procedure():
    stages_a = torch.nn.ModuleList([tiny_stage(seed=0), tiny_stage(seed=1, in_channels=5, d_model=12)])
    stages_b = copy.deepcopy(stages_a)
    opt_a = torch.optim.Adam(stages_a.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(stages_b.parameters(), lr=1e-2)
    for it in range(3):
        batches = [inputs(seed=10 * it), inputs(seed=10 * it + 1, channels=5)]
        grads_a = authors_step(stages_a, opt_a, batches)
        grads_b = summed_step(stages_b, opt_b, batches)
        assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
        for key in grads_a:
            torch.testing.assert_close(grads_a[key], grads_b[key], rtol=1e-10, atol=1e-12)
    for (name, pa), pb in zip(stages_a.named_parameters(), stages_b.parameters()):
        # The key bias shifts every score of a query equally, so softmax makes its true gradient 0;
        # Adam rescales the ~1e-17 rounding residue to full steps, so its values are not comparable.
        if "key_projection.bias" in name:
            continue
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12, msg=name)
    # and training moved the parameters, so the comparison is not vacuous
    assert not torch.allclose(next(stages_a.parameters()), next(tiny_stage(seed=0).parameters()))


def test_reconstruction_only_ablation_back_propagates_the_reconstruction_loss_once():
    stage = tiny_stage(with_intra=False, with_inter=False)
    tokens, reference = inputs()
    out = stage(tokens, GRID, reference)
    losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
    loss1, loss2 = phase_objectives(losses, 0.5, 0.5)
    assert torch.equal(loss1, losses.rec) and torch.equal(loss2, losses.rec)  # both phases reduce to L_rec
    assert torch.equal(training_objective(losses, loss1, loss2, correlation=False), losses.rec)
    assert torch.equal(training_objective(losses, loss1, loss2, correlation=True), loss1 + loss2)
