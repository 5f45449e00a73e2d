"""Metrics of METHOD.md sections 4 and 6 on hand-made distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.density import density, recovery_sizes
from explorer.metrics import entropy, shared_nucleus, tie_rtol, total_variation


def test_total_variation():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(total_variation(p, q), torch.tensor([0.0, 0.3, 0.8]))


def test_entropy_in_nats():
    q = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(entropy(q), torch.tensor([np.log(2), 0.0], dtype=torch.float32))


def test_shared_nucleus():
    p = torch.tensor([0.6, 0.25, 0.1, 0.05])
    q = torch.tensor(
        [
            [0.6, 0.25, 0.1, 0.05],  # identical: every list matches -> 99
            [0.5, 0.35, 0.1, 0.05],  # same ranking, 50% needs 1 token for both, 60% 1 vs 2 tokens
            [0.3, 0.5, 0.1, 0.1],  # top-1 differs -> 0
            [0.7, 0.1, 0.15, 0.05],  # top-1 same; 80% needs [0,1] for p and [0,2] for q
        ]
    )
    got = shared_nucleus(p, q).tolist()
    # p cum: .6 .85 .95 1 ; q1 cum: .5 .85 .95 1 -> lists equal at 99 (4 vs 4 tokens, same order)
    assert got[0] == 99
    assert got[1] == 99
    assert got[2] == 0
    # q3 cum: .7 .85(0,2) ...; at 70%: p needs [0,1], q needs [0] -> differ; 60%: [0] and [0] -> 60
    assert got[3] == 60


def test_shared_nucleus_levels_need_not_be_monotone():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([[0.45, 0.2, 0.35]])
    # 50%: p [0], q [0, 2] -> differ; 40%: [0] and [0] -> equal; 99%: [0,1,2] vs [0,2,1] -> differ
    assert shared_nucleus(p, q).tolist() == [40]


def test_density_log_and_linear():
    s = [1e-4, 1e-3, 1e-2, 1.0]
    tv = [1.0, 1.0, 0.5, 0.0]
    # log axis: trapezoids over log10 s = -4, -3, -2, 0 -> 1 + 0.75 + 0.5 = 2.25
    assert density(s, tv) == pytest.approx(2.25)
    expected_linear = np.trapezoid(tv, s)
    assert density(s, tv, "linear") == pytest.approx(expected_linear)
    # order of the inputs does not matter; sizes are clipped at 1e-8
    assert density(s[::-1], tv[::-1]) == pytest.approx(2.25)
    assert density([1e-12, 1.0], [1.0, 0.0]) == pytest.approx(4.0)


def test_recovery_sizes():
    rec = recovery_sizes([0.1, 0.01, 1.0, 0.5], [10, 0, 99, 50])
    assert rec == {1: 0.1, 10: 0.1, 50: 0.5, 90: 1.0}
    assert recovery_sizes([0.1], [0])[1] is None


def test_shared_nucleus_ignores_order_among_tied_tokens():
    p = torch.tensor([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    swapped_ties = torch.tensor([[0.3, 0.2 - 1e-7, 0.2 + 1e-7, 0.1 + 1e-7, 0.1, 0.1 - 1e-7]])
    assert shared_nucleus(p, swapped_ties).tolist() == [99]
    swapped_real = torch.tensor([[0.2, 0.3, 0.2, 0.1, 0.1, 0.1]])  # top-1 and top-2 differ by far more
    assert shared_nucleus(p, swapped_real).tolist() == [0]
    near = torch.tensor([0.3, 0.2 + 1e-6, 0.2 - 1e-6, 0.1, 0.1, 0.1])  # within float32 rounding: a tie
    assert shared_nucleus(near, swapped_ties).tolist() == [99]
    assert shared_nucleus(near, swapped_ties, tie_rtol=0.0).tolist()[0] < 50


def test_tie_tolerance_is_the_evaluations_rounding():
    """METHOD.md section 4: relative 1e-5 in float32, 1e-2 in bfloat16/float16; a wider tolerance hides a
    real swap (two tokens 3e-4 apart, relative 1e-3, as seen in a held-out comparison)."""
    assert tie_rtol(torch.float32) == 1e-5 and tie_rtol(torch.float64) == 1e-5
    assert tie_rtol(torch.bfloat16) == 1e-2 and tie_rtol(torch.float16) == 1e-2
    p = torch.tensor([0.4, 0.3003, 0.3 - 3e-4])
    swapped = torch.tensor([[0.4, 0.3 - 3e-4, 0.3003]])
    assert shared_nucleus(p, swapped).tolist()[0] < 99  # float32 default: a real swap
    assert shared_nucleus(p, swapped, tie_rtol=tie_rtol(torch.bfloat16)).tolist() == [99]


def _distributions(seed: int, V: int, B: int, sharpness: float, step: float | None):
    """``p [V]`` and ``q [B, V]`` near it: softmax of random logits times ``sharpness``, rounded to
    multiples of ``step`` (exact ties, as a quantised or bfloat16 model gives), some rows equal to ``p``."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(V, generator=g) * sharpness
    noisy = logits + torch.randn(B, V, generator=g) * torch.rand(B, 1, generator=g) * 2
    if step is not None:
        logits, noisy = (logits / step).round() * step, (noisy / step).round() * step
    p = torch.softmax(logits, -1)
    q = torch.softmax(noisy, -1)
    q[0] = p
    q[1] = torch.softmax(logits * 40, -1)  # one token near 1, the tail underflowing to exact zeros
    return p, q


@pytest.mark.parametrize("sharpness", [1.0, 4.0, 12.0, 60.0])
@pytest.mark.parametrize("step", [None, 0.5, 0.0625])
def test_shared_nucleus_equals_the_whole_sort(sharpness, step):
    """Ranking only q's first tokens (as many as p's longest nucleus, a partial top-k by exact keys)
    gives the plain reference's shared nucleus, which sorts every distribution whole, ties included."""
    from tests.reference import plain_shared_nucleus

    for seed in range(3):
        p, q = _distributions(seed, 4096, 24, sharpness, step)
        for rtol in (1e-5, 1e-2, 0.0):
            assert shared_nucleus(p, q, rtol).tolist() == plain_shared_nucleus(p, q, rtol).tolist()


def test_top_sorted_is_the_stable_sorts_prefix():
    from explorer.metrics import top_sorted

    p, q = _distributions(5, 4096, 16, 4.0, 0.25)  # many exact ties
    q[2, 7] = float("nan")
    q[3, :100] = -0.0
    sorted_q, order = torch.sort(q, dim=-1, descending=True, stable=True)
    for m in (1, 50, 700, 4096):  # the last sorts whole
        idx, values = top_sorted(q, m)
        assert torch.equal(idx, order[:, :m])
        torch.testing.assert_close(values, sorted_q[:, :m], equal_nan=True, rtol=0, atol=0)
