"""The edges of each kind among an edge order's first ``n``, for the ``n`` of a trace's strata, counted as
the order's edges become known and kept on the host.

The masked passes are made up from these counts (:mod:`explorer.passes`): which passes keep the same
edges as an earlier one (:func:`explorer.passes.kept_edges`), and on how many rows each layer's MLP runs
(:attr:`explorer.intervene.BatchColumns.mlp_rows`). Counted on the host, they cost the device no wait:
the next batch is made up while the last one runs.

Each edge has a code: 0 for an attention edge, ``1 + l`` for the MLP edge of layer ``l``, ``L + 1`` for a
residual edge (:func:`kind_codes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from explorer.edges import MLP, EdgeLayout


def kind_codes(layout: EdgeLayout, ids: torch.Tensor) -> torch.Tensor:
    """The code of each edge id of ``layout`` (``ids``: a tensor on any device; int64, on that device)."""
    L, T = layout.n_layers, layout.n_tokens
    rest = ids - layout.n_attention_ids
    block, layer = rest // (L * T), (rest % (L * T)) // T
    return torch.where(ids < layout.n_attention_ids, 0, torch.where(block == MLP - 1, 1 + layer, L + 1))


@lru_cache(maxsize=4)
def csr_codes(layout: EdgeLayout) -> torch.Tensor:
    """``[E]`` (on the host): the code of the edge at each position of :meth:`EdgeLayout.csr` (a host search
    pops those positions)."""
    return kind_codes(layout, layout.csr_ids("cpu"))


class OrderTally:
    """Edges by kind among one order's first ``n`` for each ``n`` of ``bounds``, counted as the order is
    given a part at a time (:meth:`add`, in order) in a graph of ``n_layers`` layers."""

    def __init__(self, n_layers: int, bounds: Sequence[int]):
        self.n_layers = n_layers
        self.bounds = sorted(set(bounds))
        self.counted = 0  # the order's edges added so far
        self._next = 0  # the first bound not yet reached
        self._running = np.zeros(n_layers + 2, dtype=np.int64)  # codes' counts up to `counted`
        self._at: dict[int, np.ndarray] = {}  # bound -> counts of each code

    def add(self, codes: torch.Tensor) -> None:
        """Count the codes of the order's next edges (:func:`kind_codes`; on the host, or on a device: one
        copy back)."""
        start, end = self.counted, self.counted + len(codes)
        cuts = [n for n in self.bounds[self._next :] if n <= end]
        counted = segment_counts(codes, [n - start for n in cuts], self.n_layers + 2)
        for n, part in zip(cuts, counted):
            self._running += part
            self._at[n] = self._running.copy()
        self._running += counted[-1]
        self._next += len(cuts)
        self.counted = end

    def below(self, n: int) -> tuple[int, np.ndarray, int]:
        """``(attention, MLP by layer [L], residual)`` edges among the order's first ``n`` (a bound that
        has been reached)."""
        at = self._at[n] if n else np.zeros(self.n_layers + 2, dtype=np.int64)
        return int(at[0]), at[1:-1], int(at[-1])


def segment_counts(codes: torch.Tensor, ends: list[int], width: int) -> np.ndarray:
    """``[len(ends) + 1, width]``: the counts of each code in ``codes [N]`` before ``ends[0]``, then from
    each end to the next, then after the last (``ends``: ascending, at most ``N``; a negative one as 0).
    On the host a bincount per segment (several times faster there than the scatter-add,
    bench/RESULTS.md); on a device one scatter-add (its bincount waits for the device twice per call)."""
    return (host_segment_counts if codes.device.type == "cpu" else device_segment_counts)(codes, ends, width)


def host_segment_counts(codes: torch.Tensor, ends: list[int], width: int) -> np.ndarray:
    """:func:`segment_counts` of host ``codes``, a bincount per segment."""
    values, bounds = codes.numpy(), [0] + [max(n, 0) for n in ends] + [len(codes)]
    return np.stack([np.bincount(values[a:b], minlength=width) for a, b in zip(bounds, bounds[1:])])


def device_segment_counts(codes: torch.Tensor, ends: list[int], width: int) -> np.ndarray:
    """:func:`segment_counts` in one scatter-add on ``codes``' device, and one copy back."""
    dev = codes.device
    segment = torch.searchsorted(torch.tensor(ends, device=dev), torch.arange(len(codes), device=dev), right=True)
    counts = torch.zeros((len(ends) + 1) * width, dtype=torch.long, device=dev)
    counts.scatter_add_(0, segment * width + codes, torch.ones_like(codes))
    return counts.view(-1, width).cpu().numpy()  # the only wait for the device
