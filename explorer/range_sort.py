"""Sorts and ranks of arrays too long for one sort's buffers (a long prompt's edges): each works a range of
values at a time, the ranges cut at the quantiles of an evenly spaced sample, so that no sort spans much
more than ``CHUNK / 2`` items (a CUDA sort's buffers are some 36 bytes per item, and one sort of all ``M``
edges was a long prompt's peak), and whole-array elementwise work goes in steps of ``CHUNK``. Used by the
device search (:mod:`explorer.chain_search`); each equals one whole sort (``tests/test_search.py``).
"""

from __future__ import annotations

import torch

from explorer.search import check_weights, rank_weights

CHUNK = 1 << 26
"""Items per step of the elementwise work, and twice the items of one range's sort."""

SAMPLE = 1 << 20
"""Values sampled (evenly spaced) to cut a large array's values into ranges of about ``CHUNK / 2`` items."""


def value_ranges(v: torch.Tensor) -> list[tuple[float | None, float | None]]:
    """Bounds ``(lo, hi)`` (``lo <= x < hi``; ``None``: unbounded) that cut the values of ``v [K]`` into
    increasing ranges of about ``CHUNK / 2`` items each, from a sample's quantiles. Each cut value gets a
    range of its own (``[x, next(x))``), so one value's many items fall in a range that needs no sort."""
    stride = max(1, len(v) // SAMPLE)
    sample = torch.sort(v[::stride]).values
    per = max(1, CHUNK // 2 // stride)
    cuts = sample[per::per]
    if not len(cuts):
        return [(None, None)]
    after = torch.nextafter(cuts, torch.full_like(cuts, torch.inf)) if cuts.is_floating_point() else cuts + 1
    bounds: list = [None, *torch.unique(torch.cat([cuts, after])).tolist(), None]
    return list(zip(bounds[:-1], bounds[1:]))


def _inside(v: torch.Tensor, lo, hi) -> torch.Tensor:
    inside = torch.ones_like(v, dtype=torch.bool) if lo is None else v >= lo
    return inside if hi is None else inside.logical_and_(v < hi)


def _one_value(lo, hi) -> bool:
    """Whether the range ``[lo, hi)`` of :func:`value_ranges` over integers holds a single value."""
    return lo is not None and hi is not None and hi == lo + 1


def stable_sort_by(items: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``items [K]`` (int32 edges) stably sorted by ``value[items]`` (int32, at least -1), a range of values
    at a time (:func:`value_ranges`): each range's items are gathered in their order, in steps, and
    sorted on their own after the ranges below (a range of one value, however many items, needs no
    sort)."""
    if len(items) <= CHUNK:
        return items[torch.sort(value[items.long()], stable=True).indices]
    v = gather(value, items)
    out = torch.empty_like(items)
    done = 0
    for lo, hi in value_ranges(v):
        start = done
        for i in range(0, len(items), CHUNK):
            part = items[i : i + CHUNK][_inside(v[i : i + CHUNK], lo, hi)]
            out[done : done + len(part)] = part
            done += len(part)
        if done - start > 1 and not _one_value(lo, hi):
            seg = out[start:done]
            seg.copy_(seg[torch.sort(gather(value, seg), stable=True).indices])
    return out


def dense_rank(weight: torch.Tensor) -> torch.Tensor:
    """The dense rank of each of ``weight [M]``'s values, 0 the heaviest (equal weights, -0.0 and 0.0
    included, share a rank): :func:`explorer.search.rank_weights`'s ranks, ``[M]`` int32, without its
    ``[M]`` int64 order. Past ``CHUNK`` edges, a range of values at a time (:func:`value_ranges`): the
    ranks of a range follow the number of distinct values below it."""
    if len(weight) <= CHUNK:
        return rank_weights(weight)[1]
    check_weights(weight)
    negated = (weight + 0.0).neg_()  # -0.0 for both zeros
    rank = torch.empty(len(weight), dtype=torch.int32, device=weight.device)
    below = 0  # distinct values in the ranges done
    for lo, hi in value_ranges(negated):
        ids, values = [], []
        for i in range(0, len(negated), CHUNK):
            inside = _inside(negated[i : i + CHUNK], lo, hi)
            ids.append(torch.nonzero(inside).squeeze(1).int() + i)
            values.append(negated[i : i + CHUNK][inside])
        at, vals = torch.cat(ids), torch.cat(values)
        del ids, values
        if not len(at):
            continue
        vals, by = torch.sort(vals)
        new = torch.ones(len(vals), dtype=torch.int32, device=vals.device)
        new[1:] = vals[1:] != vals[:-1]
        del vals
        dense = torch.cumsum(new, 0, dtype=torch.int32).add_(below - 1)
        rank[at[by]] = dense
        below = int(dense[-1]) + 1
    return rank


def gather(table: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """``table[at]`` in steps of ``CHUNK`` (no ``[len(at)]`` int64 copy of ``at``)."""
    out = torch.empty(len(at), dtype=table.dtype, device=table.device)
    for i in range(0, len(at), CHUNK):
        out[i : i + CHUNK] = table[at[i : i + CHUNK].long()]
    return out
