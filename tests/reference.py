"""Plain reference implementations that the fast code is checked against."""

from __future__ import annotations

import heapq

import numpy as np

from explorer.search import SearchGraph


def heap_greedy_order(graph: SearchGraph) -> np.ndarray:
    """METHOD.md section 3 as written: a max-heap of edges keyed by weight, ties to the first pushed."""
    ptr, src, w = graph.node_ptr, graph.src, graph.weight
    heap: list[tuple[float, int, int]] = []
    counter = 0

    def push_in_edges(v: int) -> None:
        nonlocal counter
        for i in range(ptr[v], ptr[v + 1]):
            heapq.heappush(heap, (-w[i], counter, i))
            counter += 1

    reached = {graph.root}
    push_in_edges(graph.root)
    order = []
    while heap:
        _, _, i = heapq.heappop(heap)
        order.append(i)
        u = int(src[i])
        if u not in reached:
            reached.add(u)
            push_in_edges(u)
    return np.array(order, dtype=np.int64)
