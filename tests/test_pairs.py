"""Prompt pairs (explorer.pairs): one prompt's strata applied to another of the same token count, checked
against the plain reference forward pass; the component diff of two traces of any lengths; the ``pair``
command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.__main__ import main
from explorer.errors import BadSetting
from explorer.pairs import diff_traces, trace_pair, transfer
from explorer.results import Settings
from explorer.trace import trace_prompt
from tests.helpers import random_model, tiny_loaded
from tests.reference import llama_masked_forward

SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)
CLEAN, CORRUPT = "The cat sat on the mat", "The dog sat on the rug"  # bytes: the same length


def _keeps(layout, ids):
    """Dense 0/1 keeps of the edge ids ``ids`` for :func:`llama_masked_forward`."""
    flat = torch.zeros(layout.n_ids)
    flat[torch.as_tensor(ids)] = 1.0
    L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
    block = lambda k: flat[layout.offset(k) : layout.offset(k) + L * T].view(L, T)
    return flat[: layout.n_attention_ids].view(L, H, T, T), block(1), block(2), block(3)


def test_a_prompts_strata_on_another_match_the_reference_pass():
    lm, plain = tiny_loaded("llama")
    settings = Settings(sizes=SIZES)
    a, b = trace_prompt(lm, CLEAN, settings), trace_prompt(lm, CORRUPT, settings)
    assert a.layout == b.layout and not np.array_equal(a.order, b.order)
    moved = transfer(lm, a, b)
    ids = torch.tensor([b.token_ids])
    with torch.no_grad():
        p = torch.softmax(plain(ids).logits[0, -1], -1)
        for point in moved.points:
            q = torch.softmax(llama_masked_forward(plain, ids, *_keeps(a.layout, a.order[: point.n_edges])), -1)
            assert point.transferred.tv == pytest.approx(float(0.5 * (p - q).abs().sum()), abs=1e-5)
    assert [p.own.tv for p in moved.points if p.own] == [s.trace.tv for s in b.strata]
    assert moved.points[-1].transferred.tv < 1e-5  # the full graph is the full graph on any prompt
    assert moved.rows()[0]["tv_own"] == b.strata[0].trace.tv
    # a prompt's strata on itself are its own trace
    same = transfer(lm, b, b)
    for point, s in zip(same.points, b.strata):
        assert point.transferred.tv == pytest.approx(s.trace.tv, abs=2e-6)
    assert same.density == pytest.approx(b.density, abs=1e-5)


def test_transfer_follows_the_source_mode():
    lm, _ = tiny_loaded("gpt2")
    a = trace_prompt(lm, CLEAN, Settings(sizes=SIZES, mode="attention-kept"))
    b = trace_prompt(lm, CLEAN, Settings(sizes=SIZES, mode="attention-kept"))
    moved = transfer(lm, a, b)
    assert moved.mode == "attention-kept"
    for point, s in zip(moved.points, b.strata):
        assert point.transferred.tv == pytest.approx(s.trace.tv, abs=2e-6)


def test_prompts_of_other_lengths_or_models_are_refused():
    lm, _ = tiny_loaded("llama")
    settings = Settings(sizes=SIZES)
    a, b = trace_prompt(lm, CLEAN, settings), trace_prompt(lm, CLEAN + "!", settings)
    with pytest.raises(BadSetting, match="the prompts have 22 and 23 tokens"):
        transfer(lm, a, b)
    other, _ = tiny_loaded("qwen2")
    c = trace_prompt(other, CLEAN, settings)
    with pytest.raises(BadSetting, match="two models"):
        diff_traces(a, c)


def test_the_diff_splits_components_by_size():
    lm, _ = tiny_loaded("llama")
    settings = Settings(sizes=SIZES)
    a, b = trace_prompt(lm, CLEAN, settings), trace_prompt(lm, "A longer prompt of other words", settings)
    diff = diff_traces(a, b)
    assert [d.size for d in diff.sizes] == [s.size for s in a.strata]
    for d, sa, sb in zip(diff.sizes, a.strata, b.strata):
        assert set(d.both) | set(d.only_a) == set(sa.components)
        assert set(d.both) | set(d.only_b) == set(sb.components)
        assert not set(d.both) & set(d.only_a) and not set(d.both) & set(d.only_b)
        union = set(sa.components) | set(sb.components)
        assert d.jaccard == pytest.approx(len(set(sa.components) & set(sb.components)) / len(union))
        assert (d.edges_a, d.edges_b) == (sa.n_edges, sb.n_edges)
    assert diff.sizes[-1].jaccard == 1.0  # the full graph holds every component
    assert diff_traces(a, a).rows()[0]["jaccard"] == 1.0
    shorter = trace_prompt(lm, CLEAN, Settings(sizes=(0.3, 0.7)))
    with pytest.raises(BadSetting, match="share no evaluated size"):
        diff_traces(a, shorter)


def test_trace_pair_does_both():
    lm, _ = tiny_loaded("llama")
    pair = trace_pair(lm, CLEAN, CORRUPT, Settings(sizes=SIZES, controls=True))
    assert pair.transfer is not None and pair.a.prompt == CLEAN and pair.b.prompt == CORRUPT
    assert not pair.a.settings.controls  # the pair traces no controls
    data = json.loads(json.dumps(pair.to_dict()))
    assert data["transfer"]["points"][0]["n_edges"] == pair.a.strata[0].n_edges
    assert "order" not in data["a"]
    uneven = trace_pair(lm, CLEAN, CLEAN + " and more", Settings(sizes=SIZES))
    assert uneven.transfer is None and uneven.diff.sizes
    # a position of each: the same token count at the traced positions
    cut = trace_pair(lm, CLEAN + " again", CORRUPT, Settings(sizes=SIZES), position=len(CLEAN) - 1, position_b=-1)
    assert cut.transfer is not None


def _config(tmp_path):
    return random_model(tmp_path)


def test_the_pair_command_prints_both_tables(tmp_path, capsys):
    model, out_json = _config(tmp_path), tmp_path / "pair.json"
    args = ["pair", "--model", model, "--prompt", "The capital of France is", "--prompt-b", "The capital of Spain is"]
    code = main([*args, "--sizes", "0.05,0.2,1", "--json", str(out_json)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    head = lines[0].split()
    assert head[:4] == ["size", "edges", "TV[B]", "TV[A->B]"] and head[-1] == "Jaccard"
    assert len([line for line in lines if line.split() and line.split()[0] in ("0.05", "0.2", "1")]) == 3
    data = json.loads(out_json.read_text())
    assert data["transfer"] is not None and len(data["diff"]["sizes"]) == 3
    code = main(["pair", "--model", model, "--prompt", "The capital", "--prompt-b", "A much longer second prompt"])
    out, err = capsys.readouterr()
    assert code == 0 and "token counts differ" in out and "Jaccard" in out
    code = main(["pair", "--model", model, "--prompt", "The capital", "--prompt-b", "  "])
    assert code == 2 and capsys.readouterr().err.startswith("error: --prompt-b: the prompt is empty")
