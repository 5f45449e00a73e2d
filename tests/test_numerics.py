"""The instrumented forward pass against plain transformers and an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.edges import EdgeLayout
from explorer.intervene import BatchColumns, EdgeRanks, MaskSpec, RankMasks, kept_mlp_rows, masked_logits, masked_pass
from explorer.models.adapters import adapter_for
from tests.helpers import IDS, TINY_CONFIGS, record, tiny_loaded
from tests.reference import attention_terms, llama_masked_forward

FAMILIES = list(TINY_CONFIGS)


@pytest.mark.parametrize("family", FAMILIES)
def test_unmasked_logits_equal_plain_transformers(family):
    lm, plain = tiny_loaded(family)
    with torch.no_grad():
        expected = plain(input_ids=IDS).logits
    logits, records = record(lm)
    assert torch.equal(logits, expected)
    assert len(records) == lm.adapter.n_layers
    # and close to the library's default (sdpa) attention, which shares no code with ours
    if family not in ("gemma2",):  # softcapping is eager-only
        plain.set_attn_implementation("sdpa")
        with torch.no_grad():
            sdpa = plain(input_ids=IDS).logits
        torch.testing.assert_close(logits, sdpa, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_per_head_terms_sum_to_attention_output(family):
    lm, _ = tiny_loaded(family)
    _, records = record(lm)
    T = IDS.shape[1]
    for l, rec in enumerate(records):
        bias = lm.adapter.out_proj_bias(lm.adapter.layers[l])
        for t in range(T):
            terms = attention_terms(lm.adapter, l, rec, t)  # [H, t+1, d]
            total = terms.sum((0, 1)) + (bias.float() if bias is not None else 0)
            torch.testing.assert_close(total, rec.attn[t].float(), atol=1e-5, rtol=1e-4)


def _full_specs(n_edges):
    return [MaskSpec(n_edges), MaskSpec(n_edges, keep_attention=True)]


def _random_order(layout, seed=0):
    from explorer.graph import TokenGraph
    from explorer.orders import search_graph

    rng = np.random.default_rng(seed)
    L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
    g = TokenGraph(layout, "l1", torch.rand(L, H, T, T), torch.rand(L, T), torch.rand(L, T), torch.rand(L, T))
    _, ids = search_graph(g)
    return rng.permutation(ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_graph_reproduces_logits_in_both_modes(family):
    lm, _ = tiny_loaded(family)
    logits, records = record(lm)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout)], "cpu")
    out = masked_logits(lm.instrumentation, IDS, ranks, _full_specs(layout.n_edges), batch_size=8)
    p = torch.softmax(logits[0, -1], -1)
    for q_logits in out:
        tv = 0.5 * (torch.softmax(q_logits, -1) - p).abs().sum()
        assert tv < 1e-5
    if not lm.adapter.parallel_residual:
        # at batch size 1, every row computed (as in a recorded pass; not the CPU's own rows, whose matrix
        # products have other shapes), the arithmetic is the unmasked pass's, bit for bit
        with torch.no_grad():
            unmasked = lm.model(input_ids=IDS, logits_to_keep=1).logits[0, -1]
        for spec in _full_specs(layout.n_edges):
            dense = RankMasks(ranks, BatchColumns.of([spec], ranks), torch.float32)
            assert not dense.columns.exact
            assert torch.equal(masked_pass(lm.instrumentation, IDS, dense)[0], unmasked)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2", "pythia"])
def test_batch_of_masks_equals_masks_one_by_one(family):
    lm, _ = tiny_loaded(family)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout, 1), _random_order(layout, 2)], "cpu")
    E = layout.n_edges
    specs = [
        MaskSpec(E // 10),
        MaskSpec(E // 3, order_index=1),
        MaskSpec(E // 2, invert=True, keep_residual=True),
        MaskSpec(E // 4, keep_attention=True),
        MaskSpec(E // 5, order_index=1, keep_residual=True),
        MaskSpec(E),
    ]
    batched = masked_logits(lm.instrumentation, IDS, ranks, specs, batch_size=len(specs))
    single = torch.cat([masked_logits(lm.instrumentation, IDS, ranks, [s], batch_size=1) for s in specs])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    # the subgraphs differ from each other, so the test is not vacuous
    assert (batched[0] - batched[1]).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_mlps_on_the_kept_rows_only_equal_masked_mlps(family):
    """A batch's MLPs computed on the rows whose MLP edge it keeps give the logits of MLPs computed on every
    row and multiplied by their 0/1 keeps (pre-norm, post-norm and parallel-residual layers); so do the
    attention's projections computed on the rows with a kept attention edge (fused projections too)."""
    lm, _ = tiny_loaded(family)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout, 7), _random_order(layout, 8)], "cpu")
    E = layout.n_edges
    specs = [
        MaskSpec(E // 9),
        MaskSpec(E // 4, order_index=1, keep_residual=True),
        MaskSpec(E // 20, keep_attention=True),
    ]
    specs.append(MaskSpec(E // 20, invert=True, keep_residual=True))
    dense = RankMasks(ranks, specs, torch.float32)
    inst = lm.instrumentation
    for exact in (False, True):  # one padded capacity for every layer, or each layer's own count
        rows = RankMasks(ranks, BatchColumns.of(specs, ranks, kept_mlp_rows(ranks, specs), exact), torch.float32)
        assert rows.columns.mlp_rows is not None  # the test is not vacuous: the rows are a part of B * T
        # and, exact, the attention's query and output projections on the rows with a kept attention edge
        skipped = [rows.attention_rows(l) is not None for l in range(layout.n_layers)]
        assert any(skipped) == exact
        # float32 rounding only: the MLPs' matrix products run on other shapes
        torch.testing.assert_close(masked_pass(inst, IDS, rows), masked_pass(inst, IDS, dense), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scaled_sums_in_one_kernel_are_bit_identical(dtype):
    """``base + t * keep`` (one addcmul) equals ``t * keep`` then ``+ base``, signs of zero included; and
    ``t`` times a bool keep equals ``t`` times its 0/1 values."""
    from explorer.models.hooks import _add_scaled

    g = torch.Generator().manual_seed(0)
    t, base = (torch.randn(64, 512, generator=g) * 100).to(dtype), torch.randn(64, 512, generator=g).to(dtype)
    base[:4], t[4:8] = -0.0, -0.0  # zeros of either sign meet zeros of either sign
    keep = (torch.rand(64, 1, generator=g) < 0.5).to(dtype)
    expected = t * keep + base
    got = _add_scaled(base, t, keep)
    assert torch.equal(got, expected) and torch.equal(got.signbit(), expected.signbit())
    # the attention's keeps come as bool: a product promotes them to exactly 0 or 1
    by_bool, by_value = t * keep.bool(), t * keep
    assert by_bool.dtype == dtype and torch.equal(by_bool, by_value)
    assert torch.equal(by_bool.signbit(), by_value.signbit())


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_pass_is_bit_identical_to_separate_scales_and_sums(family, monkeypatch):
    """The layers' residual sums in one kernel give the logits of the plain ``t * keep + base``, bit for bit."""
    from explorer.models import hooks

    lm, _ = tiny_loaded(family)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout, 3)], "cpu")
    E = layout.n_edges
    specs = [MaskSpec(E // 7), MaskSpec(E // 3, invert=True, keep_residual=True), MaskSpec(E // 2)]
    fused = masked_pass(lm.instrumentation, IDS, RankMasks(ranks, specs, torch.float32))
    monkeypatch.setattr(hooks, "_add_scaled", lambda base, t, keep: hooks._scale(t, keep) + base)
    plain = masked_pass(lm.instrumentation, IDS, RankMasks(ranks, specs, torch.float32))
    assert torch.equal(fused, plain)


def _dense_keeps(ranks, spec, layout):
    """The masks of one spec as dense 0/1 tensors, through the same RankMasks the model uses."""
    masks = RankMasks(ranks, [spec], torch.float32)
    L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
    ones_a, ones_t = torch.ones(H, T, T), torch.ones(T)
    pick = lambda m, ones: ones if m is None else m[0].reshape(ones.shape)
    return (
        torch.stack([pick(masks.attention(l), ones_a) for l in range(L)]),
        torch.stack([pick(masks.residual_attn(l), ones_t) for l in range(L)]),
        torch.stack([pick(masks.residual_mlp(l), ones_t) for l in range(L)]),
        torch.stack([pick(masks.mlp(l), ones_t) for l in range(L)]),
    )


def test_rank_masks_follow_their_definition_in_any_layer_blocks():
    """Every mask of a mixed batch (two orders, inverse, kept kinds) is ``rank < n`` (xor ``invert``, or the
    kept kind), whether the attention masks come a layer at a time or all layers at once."""
    layout = EdgeLayout(3, 2, 5)
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout, 5), _random_order(layout, 6)], "cpu")
    E = layout.n_edges
    specs = [
        MaskSpec(E // 3),
        MaskSpec(E // 2, order_index=1, keep_residual=True),
        MaskSpec(E // 4, invert=True),
        MaskSpec(E // 5, keep_attention=True),
        MaskSpec(E // 6, order_index=1, invert=True, keep_residual=True),
    ]
    for block_bytes in (1, 1 << 30):
        masks = RankMasks(ranks, specs, torch.float32, block_bytes=block_bytes)
        assert masks.block_layers == (1 if block_bytes == 1 else layout.n_layers)
        for l in range(layout.n_layers):
            for b, spec in enumerate(specs):
                below = lambda table: table[spec.order_index, l] < spec.n_keep
                expect = {
                    "attention": (below(ranks.attention) ^ spec.invert) | spec.keep_attention,
                    "residual_attn": below(ranks.residual_attn) | spec.keep_residual,
                    "residual_mlp": below(ranks.residual_mlp) | spec.keep_residual,
                    "mlp": below(ranks.mlp) ^ spec.invert,
                }
                for kind, keep in expect.items():
                    got = getattr(masks, kind)(l)[b]
                    assert torch.equal(got.reshape(keep.shape), keep.float()), (block_bytes, l, b, kind)
    # the same MLP keeps as rows: each layer's kept (subgraph, token) rows, in order, then padding (one
    # capacity for every layer, or none: each layer's own count)
    T, N = layout.n_tokens, len(specs) * layout.n_tokens
    some_rows_skipped = False
    for exact in (False, True):
        rows = RankMasks(ranks, BatchColumns.of(specs, ranks, kept_mlp_rows(ranks, specs), exact), torch.float32)
        capacities = rows.columns.mlp_rows
        assert capacities is not None and len(capacities) == layout.n_layers and max(capacities) < N
        assert (len(set(capacities)) == 1) != exact
        for l in range(layout.n_layers):
            assert rows.mlp(l) is None
            read, write = rows.mlp_rows(l)
            kept = [b * T + t for b in range(len(specs)) for t in range(T) if masks.mlp(l)[b, t, 0] == 1]
            pad = capacities[l] - len(kept)
            assert pad >= 0 and (pad == 0 or not exact)
            assert write.tolist() == kept + [N] * pad, l
            assert read.tolist() == kept + [0] * pad, l
            # the rows with an attention edge kept into them, by any head from any token (exact batches)
            attended = [b * T + t for b in range(len(specs)) for t in range(T) if masks.attention(l)[b, :, t].any()]
            got = rows.attention_rows(l)
            if not exact or len(attended) == N:
                assert got is None
            else:
                assert got is not None and got[0].tolist() == got[1].tolist() == attended
                some_rows_skipped = True
    assert some_rows_skipped


def test_masked_forward_matches_independent_reference():
    lm, plain = tiny_loaded("llama", seed=3)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1])
    order = _random_order(layout, 4)
    ranks = EdgeRanks.from_orders(layout, [order], "cpu")
    E = layout.n_edges
    for spec in [
        MaskSpec(E),
        MaskSpec(E // 2),
        MaskSpec(E // 7),
        MaskSpec(E // 3, keep_attention=True),
        MaskSpec(E // 2, invert=True, keep_residual=True),
    ]:
        ours = masked_logits(lm.instrumentation, IDS, ranks, [spec], batch_size=1)[0]
        with torch.no_grad():
            ref = llama_masked_forward(plain, IDS, *_dense_keeps(ranks, spec, layout))
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_mask_semantics_against_plain_module_hooks():
    """Removing every attention edge equals the plain model with each attention output replaced by its
    output bias (zero where there is none) through ordinary forward hooks."""
    for family in ["llama", "gpt2", "gemma2"]:
        lm, plain = tiny_loaded(family)
        layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
        kinds = layout.decode(np.arange(layout.n_ids))["kind"]
        order = _random_order(layout)
        # an order with every residual and MLP edge first: the first n keep no attention edge
        non_attn = order[kinds[order] != 0]
        attn_first_removed = np.concatenate([non_attn, order[kinds[order] == 0]])
        ranks = EdgeRanks.from_orders(layout, [attn_first_removed], "cpu")
        ours = masked_logits(lm.instrumentation, IDS, ranks, [MaskSpec(len(non_attn))], batch_size=1)[0]

        plain_adapter = adapter_for(plain)

        def zero_attention(layer):
            bias = plain_adapter.out_proj_bias(layer)
            return lambda module, args, output: (
                ((torch.zeros_like(output[0]) if bias is None else torch.zeros_like(output[0]) + bias),)
                + tuple(output[1:])
            )

        handles = [
            plain_adapter.attention(layer).register_forward_hook(zero_attention(layer))
            for layer in plain_adapter.layers
        ]
        try:
            with torch.no_grad():
                expected = plain(input_ids=IDS).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_passes_skip_rows_exactly_only_where_shapes_need_not_repeat(monkeypatch):
    """On the CPU (nothing recorded) a batch's layers run on their own rows; where passes may be recorded
    (CUDA), eager passes keep a recorded one's shapes: one padded capacity, the attention on every row."""
    from explorer import intervene

    lm, _ = tiny_loaded("llama")
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1])
    ranks = EdgeRanks.from_orders(layout, [_random_order(layout, 9)], "cpu")
    specs = [MaskSpec(layout.n_edges // 8), MaskSpec(layout.n_edges // 3)]
    seen = []
    plain = intervene.masked_pass

    def recording(inst, input_ids, masks, positions=None):
        seen.append(masks)
        return plain(inst, input_ids, masks, positions)

    monkeypatch.setattr(intervene, "masked_pass", recording)
    for repeat in (False, True):
        monkeypatch.setattr(intervene, "shapes_repeat", lambda device: repeat)
        masked_logits(lm.instrumentation, IDS, ranks, specs, batch_size=2, mlp_rows=kept_mlp_rows(ranks, specs))
        columns = seen[-1].columns
        assert columns.exact != repeat
        assert columns.mlp_rows is not None and (len(set(columns.mlp_rows)) == 1) == repeat
        skipped = [seen[-1].attention_rows(l) is not None for l in range(layout.n_layers)]
        assert any(skipped) != repeat
