"""Edge weights (METHOD.md section 2) against explicit per-edge vectors, and the edge layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.edges import ATTENTION, MLP, RESIDUAL_ATTN, RESIDUAL_MLP, EdgeLayout
from explorer.graph import TokenGraph, build_graph
from explorer.orders import search_graph
from tests.helpers import IDS, TINY_CONFIGS, record, tiny_loaded
from tests.reference import attention_terms, plain_csr


@pytest.fixture(scope="module", params=["llama", "gemma3", "olmo2", "gpt2", "pythia"])
def recorded(request):
    lm, _ = tiny_loaded(request.param)
    _, records = record(lm)
    return lm, records


@pytest.mark.parametrize("weighting", ["l1", "l2", "ifr"])
def test_weights_into_every_node_sum_to_one(recorded, weighting):
    lm, records = recorded
    g = build_graph(lm.adapter, records, weighting)
    ptr, src, w, ids = g.csr()
    w, ptr = w.numpy(), ptr.numpy()
    sums = np.add.reduceat(w, ptr[:-1][np.diff(ptr) > 0])
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    assert (w >= 0).all()
    assert len(w) == g.layout.n_edges


def _explicit_node_vectors(lm, records, l, t):
    """(node vector y, [edge vectors]) of attention node (2l+1, t): residual first, then heads x sources."""
    rec = records[l]
    terms = attention_terms(lm.adapter, l, rec, t)  # [H, t+1, d]
    x = rec.x[t].float()
    y = x + rec.attn[t].float()
    return y, [x] + list(terms.reshape(-1, terms.shape[-1]))


@pytest.mark.parametrize("weighting", ["l1", "l2", "ifr"])
def test_attention_weights_equal_explicit_vectors(recorded, weighting):
    """The H x T norm trick (and the blockwise ifr) give the weights of the explicit edge vectors."""
    lm, records = recorded
    g = build_graph(lm.adapter, records, weighting)
    H = g.layout.n_heads
    for l in range(len(records) - 1):
        for t in [0, 3, IDS.shape[1] - 1]:
            y, vecs = _explicit_node_vectors(lm, records, l, t)
            if weighting == "ifr":
                scores = torch.stack([(y.abs().sum() - (y - e).abs().sum()).clamp_min(0) for e in vecs])
            else:
                p = 1 if weighting == "l1" else 2
                scores = torch.stack([torch.linalg.vector_norm(e, ord=p) for e in vecs])
            expected = scores / scores.sum()
            got = torch.cat([g.residual_attn[l, t : t + 1], g.attention[l, :, t, : t + 1].reshape(-1)])
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
            assert H * (t + 1) + 1 == len(vecs)


def test_output_node_uses_linearised_final_norm(recorded):
    lm, records = recorded
    g = build_graph(lm.adapter, records, "l1")
    rec = records[-1]
    mid = rec.x[-1].float() + rec.attn[-1].float()
    gain = lm.adapter.norm_gain(lm.adapter.final_norm)
    r, m = (gain * mid).abs().sum(), (gain * rec.mlp[-1].float()).abs().sum()
    torch.testing.assert_close(g.residual_mlp[-1, -1], r / (r + m), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(g.mlp[-1, -1], m / (r + m), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 1, False), (1, 3, 4, True), (3, 2, 5, False), (4, 3, 7, True)])
def test_layer_by_layer_csr_equals_the_plain_one(shape):
    """The CSR built a layer at a time (int32 sources) is the one built from every layer at once, and
    the weights gathered block by block are the concatenated blocks' entries."""
    lay = EdgeLayout(*shape)
    ptr, src = lay.csr("cpu")
    plain_ptr, plain_src, plain_ids = plain_csr(lay)
    np.testing.assert_array_equal(ptr.numpy(), plain_ptr)
    np.testing.assert_array_equal(src.numpy(), plain_src)
    np.testing.assert_array_equal(lay.csr_ids("cpu").numpy(), plain_ids)
    assert src.dtype == torch.int32 and len(src) == lay.n_edges
    L, H, T, _ = shape
    blocks = [torch.rand(L, H, T, T), torch.rand(L, T), torch.rand(L, T), torch.rand(L, T)]
    g = TokenGraph(lay, "l1", *blocks)
    flat = torch.cat([b.reshape(-1) for b in blocks])
    ids = torch.as_tensor(plain_ids)
    torch.testing.assert_close(g.weights_of(ids), flat[ids], rtol=0, atol=0)


def test_csr_agrees_with_layout_decode(recorded):
    lm, records = recorded
    g = build_graph(lm.adapter, records, "l1")
    sg, ids = search_graph(g)
    dec = g.layout.decode(ids)
    dst = np.repeat(np.arange(len(sg.node_ptr) - 1), np.diff(sg.node_ptr))
    np.testing.assert_array_equal(dec["dst_node"], dst)
    np.testing.assert_array_equal(dec["src_node"], sg.src)
    assert len(np.unique(ids)) == len(ids) == g.layout.n_edges
    # edge kinds and the parallel-residual MLP source
    L, T = g.layout.n_layers, g.layout.n_tokens
    mlp = dec["kind"] == MLP
    src_g = dec["src_node"][mlp] // T
    expected_g = 2 * dec["layer"][mlp] + (0 if g.layout.parallel else 1)
    np.testing.assert_array_equal(src_g, expected_g)
    assert set(np.unique(dec["kind"])) == {ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP, MLP}
    # only the output token's nodes in the last layer have in-edges
    assert (dec["target"][dec["layer"] == L - 1] == T - 1).all()


def test_all_families_have_adapters():
    for name in TINY_CONFIGS:
        lm, _ = tiny_loaded(name)
        assert lm.adapter.n_layers == 3


@pytest.mark.parametrize("step", [None, 13], ids=["whole", "in steps"])
def test_stratum_counts_equal_counting_each_prefix(recorded, monkeypatch, step):
    """ "in steps": the order counted 13 edges at a time, as a long prompt's is."""
    from explorer import edges
    from explorer.edges import stratum_counts

    if step is not None:
        monkeypatch.setattr(edges, "COUNT_STEP", step)
    lm, records = recorded
    g = build_graph(lm.adapter, records, "l1")
    lay = g.layout
    _, ids = search_graph(g)
    order = np.random.default_rng(3).permutation(ids)
    n_keeps = [1, 7, 50, len(order) // 3, len(order)]
    comps, kinds = stratum_counts(lay, torch.as_tensor(order), n_keeps)
    dec = lay.decode(order)
    names = lay.component_names()
    for i, n in enumerate(n_keeps):
        d = {k: v[:n] for k, v in dec.items()}
        assert kinds[i].tolist() == [
            int((d["kind"] == ATTENTION).sum()),
            int((d["kind"] == MLP).sum()),
            int(np.isin(d["kind"], [RESIDUAL_ATTN, RESIDUAL_MLP]).sum()),
        ]
        heads = [f"a{l}.h{h}" for l, h, k in zip(d["layer"], d["head"], d["kind"]) if k == ATTENTION]
        mlps = [f"m{l}" for l, k in zip(d["layer"], d["kind"]) if k == MLP]
        expected = {name: (heads + mlps).count(name) for name in set(heads + mlps)}
        assert {names[c]: int(x) for c, x in enumerate(comps[i]) if x} == expected
    # arrays in, arrays out; tensors in, tensors out
    assert isinstance(lay.component(order[:5]), np.ndarray) and torch.is_tensor(lay.kind(torch.as_tensor(order[:5])))
