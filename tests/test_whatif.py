"""What-if ablations (explorer.whatif): one masked pass of a changed subgraph. Removing nothing reproduces
each stratum's TV; removing everything from the full model equals the pass with every head and MLP removed;
additions and removals change exactly the components' edges; bad names get one clear message, on the
command line an ``error:`` line and status 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.__main__ import main
from explorer.components import component_edge_ids, parse_components
from explorer.errors import BadSetting
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.metrics import total_variation
from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.whatif import changed_keep, evaluate_subgraph
from tests.helpers import random_model, tiny_loaded

SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)
PROMPT = "hello world, again"


@pytest.mark.parametrize("family", ["llama", "gpt2", "pythia", "gemma3", "olmo2"])
@pytest.mark.parametrize("mode", ["all", "attention-kept"])
def test_removing_nothing_reproduces_each_stratum(family, mode):
    lm, _ = tiny_loaded(family)
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES, mode=mode))
    for s in trace.strata:
        result = evaluate_subgraph(lm, trace, size=s.size)
        assert result.size == s.size and not result.from_full
        assert result.output.tv == pytest.approx(s.trace.tv, abs=2e-6)
        assert result.base.tv == pytest.approx(s.trace.tv, abs=2e-6)
        assert result.output.shared_nucleus == s.trace.shared_nucleus
        assert [t.id for t in result.output.top] == [t.id for t in s.trace.top]
        assert result.n_edges == result.base_edges
    full = evaluate_subgraph(lm, trace, size="full")
    assert full.from_full and full.n_edges == trace.n_edges and full.output.tv < 1e-6
    assert [t.id for t in full.full.top] == [t.id for t in trace.full.top]


@pytest.mark.parametrize("family", ["llama", "gpt2", "pythia", "gemma2"])
def test_removing_everything_from_the_full_model_is_the_all_removed_pass(family):
    lm, plain = tiny_loaded(family)
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES))
    result = evaluate_subgraph(lm, trace, size=None, remove="*")
    kinds = trace.layout.counts_by_kind()
    assert result.n_edges == kinds["residual"]  # every head and MLP gone, every residual edge kept
    assert result.removed == trace.layout.component_names()
    # the same pass written directly: every attention and MLP edge removed, every residual edge kept
    ids = torch.tensor([trace.token_ids])
    ranks = EdgeRanks.from_orders(trace.layout, [trace.order], lm.device)
    specs = [MaskSpec(trace.n_edges), MaskSpec(trace.n_edges, invert=True, keep_residual=True)]
    q = torch.softmax(masked_logits(lm.instrumentation, ids, ranks, specs, 2), -1)
    assert result.output.tv == pytest.approx(float(total_variation(q[0], q[1:])[0]), abs=1e-6)
    if family == "llama":  # no biases: the output is the embeddings through the final norm and unembedding
        with torch.no_grad():
            x = plain.model.embed_tokens(ids)[0, -1]
            reference = torch.softmax(plain.lm_head(plain.model.norm(x)), -1)
        assert result.output.top[0].id == int(reference.argmax())
        assert result.output.top[0].prob == pytest.approx(float(reference.max()), abs=1e-6)


def test_removals_apply_after_additions_and_change_exactly_those_edges():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES))
    layout = trace.layout
    small = trace.strata[0]
    order, n_keep, n_before = changed_keep(
        trace, 0, parse_components("L1", layout), parse_components("a1.h2", layout), "all"
    )
    kept = set(order[:n_keep].tolist())
    l1 = set(component_edge_ids(layout, parse_components("L1", layout)).tolist())
    head = set(component_edge_ids(layout, parse_components("a1.h2", layout)).tolist())
    assert kept == (set(trace.order[: small.n_edges].tolist()) | l1) - head
    assert sorted(order.tolist()) == sorted(trace.order.tolist()) and n_before == small.n_edges
    result = evaluate_subgraph(lm, trace, size=small.size, add=["L1"], remove=["a1.h2"])
    assert result.n_edges == n_keep
    assert result.added == ["a1.h0", "a1.h1", "a1.h2", "a1.h3", "m1"] and result.removed == ["a1.h2"]
    # removing a head from the full model moves the output
    moved = evaluate_subgraph(lm, trace, remove="a0")
    assert moved.output.tv > 1e-4 and moved.n_edges == trace.n_edges - len(
        component_edge_ids(layout, parse_components("a0", layout))
    )


def test_attention_kept_mode_keeps_attention_but_removes_named_heads():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES, mode="attention-kept"))
    attention = trace.layout.counts_by_kind()["attention"]
    small = trace.strata[0]
    result = evaluate_subgraph(lm, trace, size=small.size, remove="a0.h0")
    in_small = {int(i) for i in trace.order[: small.n_edges] if trace.layout.kind(np.array([i]))[0] != 0}
    head = len(component_edge_ids(trace.layout, parse_components("a0.h0", trace.layout)))
    assert result.base_edges == attention + len(in_small)
    assert result.n_edges == result.base_edges - head


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"remove": "a0.q1"}, "unknown component 'a0.q1'"),
        ({"remove": "a7.h0"}, "layer 7 is outside the model's 3 layers"),
        ({"size": 2.0}, "size must be in"),
        ({"size": "half"}, "size must be a number"),
    ],
)
def test_bad_input_is_one_clear_message(kwargs, message):
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES))
    with pytest.raises(BadSetting, match=message):
        evaluate_subgraph(lm, trace, **kwargs)


def test_another_model_is_refused():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, PROMPT, Settings(sizes=SIZES))
    other, _ = tiny_loaded("qwen2")
    with pytest.raises(BadSetting, match="the loaded model is 'tiny-qwen2'"):
        evaluate_subgraph(other, trace, remove="m0")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A random three-layer Llama with the embedded model's tokenizer (``--model random:CONFIG``)."""
    return random_model(tmp_path_factory.mktemp("tiny"))


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_prints_the_what_if(tiny_config, capsys):
    code, out, err = _cli(
        ["trace", "--model", tiny_config, "--prompt", "The capital of France is", "--sizes", "0.05,0.2,1"]
        + ["--ablate", "a1.h2,m0", "--add", "a0", "--whatif-size", "0.2"],
        capsys,
    )
    assert code == 0, err
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("what-if from the subgraph at s = 0.2"))
    assert "removed a1.h2, m0" in lines[head] and "added a0.h0" in lines[head]
    assert lines[head + 1].split()[0] == "before" and lines[head + 2].split()[0] == "after"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ablate", "a1.x"], "--ablate: unknown component 'a1.x'"),
        (["--add", "m1,"], "--add: an empty component name"),
        (["--ablate", "a9.h0"], "--ablate: component 'a9.h0': layer 9 is outside"),
        (["--ablate", "m0", "--whatif-size", "big"], "--whatif-size must be a size"),
    ],
)
def test_bad_names_on_the_command_line_are_one_error_line(tiny_config, extra, message, capsys):
    code, out, err = _cli(["trace", "--model", tiny_config, "--prompt", "The capital", *extra], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err
