"""GPU benchmark and correctness run: models built from real configs with random weights (bf16).

    python -m bench.gpu_bench --correctness
    python -m bench.gpu_bench --models smollm2-135m,qwen3-0.6b,llama-3.2-1b,llama-3.1-8b --lengths 48,128,256,512
    python -m bench.gpu_bench --models llama-3.1-8b --lengths 48 --reference
    python -m bench.gpu_bench --models llama-3.1-8b --corpus 200
    python -m bench.gpu_bench --models smollm2-135m,llama-3.1-8b --lengths 48 --graphs

Per prompt: median wall time of each stage of trace_prompt (27 sizes, both controls; ``--batch-size``
subgraphs per masked pass, default 81: one pass per trace; the app's default is 32) over several
random prompts after a warm-up, and peak GPU memory. ``--reference`` also times a reference-style
pipeline on the same inputs: a networkx multigraph with one object per edge, a Python heap, and one
masked forward pass per subgraph at batch size 1. ``--graphs``: each length with the masked passes
eager and replayed as CUDA graphs (explorer/pass_graphs.py), timed back to back, and whether the traces
agree exactly (one batch per trace, and batches of 32 over both modes: several batch structures).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from bench.support import build, random_prompts
from explorer import pass_graphs
from explorer.graph import build_graph
from explorer.intervene import MaskSpec, masked_logits
from explorer.orders import random_control_order, search_graph
from explorer.results import Settings
from explorer.trace import trace_modes, trace_prompt


def time_model(lm, length: int, n_prompts: int, settings: Settings) -> dict:
    """Median stage times over ``n_prompts`` prompts of one length after a warm-up, and ``cold``: the total
    of a trace whose length has not been seen (the random control's order not yet kept)."""
    prompts = random_prompts(n_prompts + 2, length, lm.model.config.vocab_size)
    trace_prompt(lm, prompts[0], settings)  # warm-up
    torch.cuda.reset_peak_memory_stats()
    random_control_order.clear()
    cold = trace_prompt(lm, prompts[1], settings).timings["total"]
    runs = [trace_prompt(lm, p, settings).timings for p in prompts[2:]]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    med["cold"] = cold
    med["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return med


def _outputs(traces) -> list:
    return [(t.order.tolist(), [s.outputs for s in t.strata], t.full) for t in traces]


def compare_graphs(lm, length: int, n_prompts: int, settings: Settings) -> str:
    """Stage times with the masked passes eager, then replayed as CUDA graphs, and whether both give the
    same traces (orders, and every output of every stratum, exactly)."""
    inst = lm.instrumentation
    vocab = lm.adapter.config.vocab_size
    check = random_prompts(3, length, vocab, seed=3)
    several = replace(settings, batch_size=32)
    lines = []
    results = {}
    for replayed in (False, True):
        pass_graphs.disable(inst)
        graphs = pass_graphs.enable(inst, lm.device) if replayed else None
        med = time_model(lm, length, n_prompts, settings)
        traces = [trace_prompt(lm, p, settings) for p in check]
        traces += [t for p in check for t in trace_modes(lm, p, several)]
        results[replayed] = _outputs(traces)
        stages = ", ".join(f"{k} {v * 1000:.1f}" for k, v in med.items() if k not in ("cold", "peak_gib"))
        counts = f"; {graphs.captures} captures, {graphs.replays} replays" if graphs else ""
        lines.append(
            f"  {'graphs' if replayed else 'eager '}: {stages} ms; first trace of this length "
            f"{med['cold'] * 1000:.0f} ms; peak {med['peak_gib']:.1f} GiB{counts}"
        )
    same = results[False] == results[True]
    return "\n".join(lines + [f"  traces equal, eager and replayed: {same}"])


def reference_pipeline(lm, prompt: str, settings: Settings) -> float:
    """Reference-style: networkx multigraph (an object per edge), a Python heap, one masked pass per
    subgraph at batch size 1. Same weights and masks as the engine; returns seconds."""
    import networkx as nx

    from explorer.intervene import EdgeRanks
    from explorer.search import random_priorities, strata_edges

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"].to(lm.device)
    inst = lm.instrumentation
    logits, records = inst.recorded_forward(ids)
    logits = logits[0, -1].float()
    graph = build_graph(lm.adapter, records, settings.weighting)
    sg, edge_ids = search_graph(graph)
    g = nx.MultiDiGraph()
    dst = np.repeat(np.arange(len(sg.node_ptr) - 1), np.diff(sg.node_ptr))
    for i, (u, v, w) in enumerate(zip(sg.src.tolist(), dst.tolist(), sg.weight.tolist())):
        g.add_edge(u, v, key=i, weight=w)

    def heap_order(weight_of):
        heap, counter, reached, order = [], 0, {sg.root}, []
        for _, _, k, d in g.in_edges(sg.root, keys=True, data=True):
            heapq.heappush(heap, (-weight_of(k, d), counter, k))
            counter += 1
        while heap:
            _, _, k = heapq.heappop(heap)
            order.append(k)
            u = int(sg.src[k])
            if u not in reached:
                reached.add(u)
                for _, _, k2, d2 in g.in_edges(u, keys=True, data=True):
                    heapq.heappush(heap, (-weight_of(k2, d2), counter, k2))
                    counter += 1
        return np.array(order)

    order = edge_ids[heap_order(lambda k, d: d["weight"])]
    is_attn = graph.layout.decode(edge_ids)["kind"] == 0
    keys = random_priorities(is_attn, settings.seed)
    rand = edge_ids[heap_order(lambda k, d: keys[k])]
    ranks = EdgeRanks.from_orders(graph.layout, [order, rand], lm.device)
    p = torch.softmax(logits, -1)
    for _, n in strata_edges(settings.sizes, graph.layout.n_edges):
        for spec in (
            MaskSpec(n),
            MaskSpec(n, invert=True, keep_residual=True),
            MaskSpec(n, order_index=1, keep_residual=True),
        ):
            q = torch.softmax(masked_logits(inst, ids, ranks, [spec], 1)[0], -1)
            float(0.5 * (q - p).abs().sum())  # one metric and one transfer per subgraph
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def correctness() -> None:
    """Same weights: CPU fp32 vs GPU bf16 (and GPU fp32) edge orders and TV curves."""
    prompt = random_prompts(1, 40, 49152, seed=5)[0]
    settings = Settings(controls=True)
    cpu = build("smollm2-135m", "cpu", torch.float32)
    state = cpu.model.state_dict()
    t_cpu = trace_prompt(cpu, prompt, settings)
    print(f"correctness: SmolLM2-135M shape, random weights, 40 tokens, E = {t_cpu.n_edges}")
    for dtype in (torch.float32, torch.bfloat16):
        gpu = build("smollm2-135m", "cuda", dtype)
        gpu.model.load_state_dict(state)
        with torch.no_grad():
            ids = gpu.tokenizer(prompt, return_tensors="pt")["input_ids"].cuda()
            gpu.model.set_attn_implementation("eager")  # plain transformers, uninstrumented attention
            plain = gpu.model(input_ids=ids).logits[0, -1].float()
            gpu.model.set_attn_implementation("strace")
        t_gpu = trace_prompt(gpu, prompt, settings)
        same = np.asarray(t_cpu.order) == np.asarray(t_gpu.order)
        prefix = int(np.argmin(same)) if not same.all() else len(same)
        tv_cpu = np.array([s.trace.tv for s in t_cpu.strata])
        tv_gpu = np.array([s.trace.tv for s in t_gpu.strata])
        overlap = [
            len(np.intersect1d(t_cpu.order[: s.n_edges], t_gpu.order[: s.n_edges])) / s.n_edges for s in t_cpu.strata
        ]
        pairs = zip(t_cpu.strata, t_gpu.strata)
        control_diff = max(abs(a.outputs[v].tv - b.outputs[v].tv) for a, b in pairs for v in ("inverse", "random"))
        print(
            f"  GPU {str(dtype).split('.')[-1]}: TV at s=1 {t_gpu.strata[-1].trace.tv:.2e} "
            f"(random control {t_gpu.strata[-1].outputs['random'].tv:.2e}); "
            f"common prefix of the edge order {prefix} edges; "
            f"stratum overlap with CPU min {min(overlap):.3f}, at s<=1e-3 "
            f"{min(o for o, s in zip(overlap, t_cpu.strata) if s.size <= 1e-3):.3f}; "
            f"max |TV_gpu - TV_cpu| {np.abs(tv_gpu - tv_cpu).max():.4f} (trace), "
            f"{control_diff:.4f} (controls); "
            f"full model top-1 CPU {t_cpu.full.top[0].id} GPU {t_gpu.full.top[0].id}"
        )
        p_trace = torch.tensor([tp.prob for tp in t_gpu.full.top])
        p_plain = torch.softmax(plain, -1).topk(len(p_trace)).values.cpu()
        print(f"    instrumented vs plain eager top-10 probs max diff {float((p_trace - p_plain).abs().max()):.2e}")
        del gpu
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="")
    parser.add_argument("--lengths", default="48")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--correctness", action="store_true")
    parser.add_argument("--corpus", type=int, default=0, help="time this many prompts back to back")
    parser.add_argument("--graphs", action="store_true", help="eager against CUDA-graph masked passes")
    parser.add_argument("--batch-size", type=int, default=81, help="masked subgraphs per pass (81: one per trace)")
    args = parser.parse_args()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if args.correctness:
        correctness()
    lengths = [int(x) for x in args.lengths.split(",")]
    settings = Settings(controls=True, batch_size=args.batch_size, max_tokens=max(lengths + [48]) + 8)
    for name in [m for m in args.models.split(",") if m]:
        lm = build(name, "cuda", torch.bfloat16)
        for length in lengths:
            if args.graphs:
                print(f"{name} T={length}:\n{compare_graphs(lm, length, args.prompts, settings)}", flush=True)
                continue
            med = time_model(lm, length, args.prompts, settings)
            stages = ", ".join(
                f"{k} {v * 1000:.0f} ms" for k, v in med.items() if k not in ("total", "cold", "peak_gib")
            )
            print(
                f"{name} T={length}: total {med['total'] * 1000:.0f} ms ({stages}); first trace of this length "
                f"{med['cold'] * 1000:.0f} ms; peak {med['peak_gib']:.1f} GiB"
            )
            if args.reference and length == 48:
                prompt = random_prompts(1, length, lm.adapter.config.vocab_size, seed=9)[0]
                ref = reference_pipeline(lm, prompt, settings)
                print(
                    f"{name} T={length}: reference-style pipeline {ref:.2f} s, ratio {ref / med['total']:.0f}x "
                    f"({ref / med['cold']:.0f}x to a first trace of this length)"
                )
        if args.corpus:
            prompts = random_prompts(args.corpus, 48, lm.adapter.config.vocab_size, seed=11)
            trace_prompt(lm, prompts[0], settings)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for p in prompts:
                trace_prompt(lm, p, settings)
            dt = time.perf_counter() - t0
            print(f"{name} corpus: {args.corpus} prompts of 48 tokens in {dt:.1f} s = {args.corpus / dt:.2f} prompts/s")
        del lm
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
