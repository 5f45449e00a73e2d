"""Component inspection (explorer.inspection, explorer.components): a head's and an MLP's terms add up to
the model's own sub-layer outputs, layer outputs and logits on tiny models of every family; the panel's
numbers (pattern, edges, share, entry size, promoted and suppressed tokens) agree with the plain model and
with the views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.components import component_edge_ids, component_in_trace, parse_components, split_names
from explorer.errors import BadSetting
from explorer.inspection import direct_logits, inspect_component, logit_offset, residual_terms
from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.views import charts, labels
from tests.helpers import TINY_CONFIGS, tiny_loaded

IDS = [5, 17, 99, 3, 42, 7, 250, 11]
SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)


def _plain_layers(plain):
    for path in ("model.layers", "transformer.h", "gpt_neox.layers"):
        obj = plain
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return list(obj)
        except AttributeError:
            continue
    raise AssertionError("no layers")


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_head_terms_sum_with_the_others_to_the_attention_and_layer_outputs(family):
    lm, plain = tiny_loaded(family)
    terms = residual_terms(lm, IDS)
    adapter = lm.adapter
    layers = _plain_layers(plain)
    attn_out: dict[int, torch.Tensor] = {}
    hooks = []
    for l, layer in enumerate(layers):
        name = adapter.family.post_attn_norm or adapter.family.attention
        module = layer
        for part in name.split("."):
            module = getattr(module, part)

        def hook(mod, args, output, l=l):
            out = output[0] if isinstance(output, tuple) else output
            attn_out[l] = out[0, -1].detach().float()

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            res = plain(torch.tensor([IDS]), output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    hidden = [h[0, -1].float() for h in res.hidden_states[:-1]]  # each layer's input (the last one is normed)
    L = adapter.n_layers
    assert terms.heads.shape == (L, adapter.n_heads, adapter.d_model)
    for l in range(L):
        # every head's term, plus the output bias, is the attention term the plain model adds
        torch.testing.assert_close(terms.heads[l].sum(0) + terms.attn_bias[l], attn_out[l], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(terms.layer_inputs[l], hidden[l], atol=2e-5, rtol=1e-4)
        # and with the residual and the MLP, the next layer's input
        after = terms.layer_inputs[l] + terms.heads[l].sum(0) + terms.attn_bias[l] + terms.mlps[l]
        torch.testing.assert_close(after, terms.layer_inputs[l + 1], atol=2e-5, rtol=1e-4)
    # every term's direct logits, plus the final norm's and unembedding's biases, are the model's logits
    every = torch.cat([terms.embedding[None], terms.heads.reshape(-1, adapter.d_model), terms.attn_bias, terms.mlps], 0)
    logits = direct_logits(lm, terms.out, every).sum(0) + logit_offset(lm)
    cap = getattr(plain.config, "final_logit_softcapping", None)
    if cap:
        logits = cap * torch.tanh(logits / cap)
    torch.testing.assert_close(logits, res.logits[0, -1].float(), atol=5e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def traced():
    lm, plain = tiny_loaded("llama")
    trace = trace_prompt(lm, "hello world, again", Settings(sizes=SIZES))
    return lm, plain, trace


def test_a_head_panel_matches_the_model_and_the_views(traced):
    lm, plain, trace = traced
    i = labels.closest_stratum(trace, 0.2)
    heads = [n for n in trace.strata[i].components if n.startswith("a")]
    name = max(heads, key=lambda n: trace.strata[i].components[n])
    panel = inspect_component(lm, trace, name, size=0.2, k=5)
    layer, head = panel.component.layer, panel.component.head
    assert (panel.name, panel.component.kind, f"a{layer}.h{head}") == (name, "head", name)
    with torch.no_grad():
        attentions = plain(torch.tensor([trace.token_ids]), output_attentions=True).attentions
    assert panel.pattern is not None and panel.pattern.shape == (len(trace.tokens),) * 2
    np.testing.assert_allclose(panel.pattern, attentions[layer][0, head].numpy(), atol=1e-6)
    # the edges are the view's edges of that head at that size, heaviest first
    view = charts.component_edges(trace, name, size=0.2)
    assert [e.rank for e in panel.component.edges] == [e["rank"] for e in view]
    assert len(panel.component.edges) == trace.strata[i].components[name]
    assert panel.component.entered == labels.first_entry(trace)[name]
    assert panel.component.size == trace.strata[i].size
    # promoted / suppressed: the term's direct logits, highest and lowest
    terms = residual_terms(lm, trace.token_ids)
    dl = direct_logits(lm, terms.out, terms.heads[layer, head])
    assert [t.id for t in panel.promoted] == dl.topk(5).indices.tolist()
    assert [t.id for t in panel.suppressed] == (-dl).topk(5).indices.tolist()
    assert panel.promoted[0].logit > 0 > panel.suppressed[0].logit
    assert panel.term_norm == pytest.approx(float(terms.heads[layer, head].norm()))


def test_an_mlp_panel_has_no_pattern_and_shares_sum_to_one(traced):
    lm, _, trace = traced
    panel = inspect_component(lm, trace, "m1", size="full", k=3)
    assert panel.pattern is None and panel.component.kind == "mlp" and panel.component.head is None
    assert len(panel.promoted) == len(panel.suppressed) == 3
    # at the full graph, each MLP has one edge per token (the last layer's only at the output token)
    assert len(panel.component.edges) == len(trace.tokens)
    names = trace.layout.component_names()
    total = sum(component_in_trace(trace, n, 0.5).share for n in names)
    i = labels.closest_stratum(trace, 0.5)
    edges = labels.trace_edges(trace, i)
    residual = edges["weight"][edges["component"] < 0].sum() / edges["weight"].sum()
    assert total + residual == pytest.approx(1.0)


def test_a_component_outside_the_trace_says_so(traced):
    _, _, trace = traced
    i = 0
    names = set(trace.layout.component_names())
    absent = sorted(names - set(trace.strata[i].components))[0]
    part = component_in_trace(trace, absent, trace.strata[i].size)
    assert part.edges == [] and part.share == 0.0
    assert part.entered == labels.first_entry(trace).get(absent)


def test_names_cover_heads_layers_and_everything():
    from explorer.edges import EdgeLayout

    layout = EdgeLayout(3, 4, 5)
    assert parse_components("a1.h2", layout) == [1 * 4 + 2]
    assert parse_components("a1", layout) == parse_components("a1.*", layout) == [4, 5, 6, 7]
    assert parse_components(["m2"], layout) == [12 + 2]
    assert parse_components("L0", layout) == [0, 1, 2, 3, 12]
    assert parse_components("*", layout) == list(range(15))
    assert parse_components(" a0.h0 , m0 ", layout) == [0, 12]
    # a component's edges are every edge of the graph it owns
    ids = component_edge_ids(layout, parse_components("*", layout))
    kinds = layout.counts_by_kind()
    assert len(ids) == len(set(ids.tolist())) == kinds["attention"] + kinds["mlp"]


@pytest.mark.parametrize(
    "names, message",
    [
        ("a1.x", "unknown component 'a1.x'"),
        ("a1,,m2", "empty component name"),
        ("h3", "unknown component"),
        ("a9.h0", "layer 9 is outside the model's 3 layers"),
        ("a0.h4", "head 4 is outside the model's 4 heads"),
        ("m3", "layer 3 is outside"),
    ],
)
def test_bad_names_get_one_clear_message(names, message):
    from explorer.edges import EdgeLayout

    with pytest.raises(BadSetting, match=message.replace("(", r"\(")):
        parse_components(names, EdgeLayout(3, 4, 5))


def test_inspection_refuses_several_components_and_another_model(traced):
    lm, _, trace = traced
    with pytest.raises(BadSetting, match="names 4 components"):
        inspect_component(lm, trace, "a1")
    other, _ = tiny_loaded("gpt2")
    with pytest.raises(BadSetting, match="this trace is of model 'tiny-llama'"):
        inspect_component(other, trace, "a1.h0")
    assert split_names(None) == []
