"""Prompt pairs: one prompt's subgraphs applied to another, and two traces compared by component.

- :func:`transfer`: the strata of trace ``A`` (its greedy order, size by size) applied edge by edge to the
  prompt of trace ``B``, which has the same number of tokens at its traced position (a clean prompt and a
  corrupted one, or two minimal variants): one batched masked pass of ``B``'s tokens per batch, each
  subgraph's distribution compared with ``B``'s full model. Beside ``B``'s own trace, this says whether
  ``A``'s computation serves ``B``.
- :func:`diff_traces`: two traces of one model, of any lengths: at each size both evaluated, the
  components (heads and MLPs) with edges in both, in one only, and their Jaccard overlap.
- :func:`trace_pair`: both prompts traced with the same settings, the transfer (when the lengths agree) and
  the diff; :func:`pair_traces` the same of two traces already computed (the app's cached sweeps).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from explorer.components import check_model
from explorer.density import density
from explorer.errors import BadSetting
from explorer.inputs import holding
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.loading import LoadedModel
from explorer.outputs import summaries
from explorer.results import Output, Settings, Trace
from explorer.trace import trace_prompt
from explorer.whatif import probe_ids


@dataclass
class TransferPoint:
    """One size: ``n_edges`` edges; ``own``: ``B``'s own trace there (``None`` if ``B`` has no stratum of
    that many edges); ``transferred``: ``A``'s subgraph of that size on ``B``'s prompt, against ``B``'s
    full model."""

    size: float
    n_edges: int
    own: Output | None
    transferred: Output


@dataclass
class Transfer:
    """``A``'s strata applied to ``B``'s prompt (:func:`transfer`), in ``A``'s ablation mode. ``density`` and
    ``own_density``: the area under the transferred TV curve and under ``B``'s own (over ``log10(s)`` or
    ``s``, as ``B``'s settings say)."""

    source_prompt: str
    target_prompt: str
    source_tokens: list[str]
    target_tokens: list[str]
    mode: str
    points: list[TransferPoint]
    density: float
    own_density: float

    def rows(self) -> list[dict]:
        """One row per size: edges, ``B``'s own TV and shared nucleus, the transferred ones."""
        return [
            {
                "size": p.size,
                "edges": p.n_edges,
                "tv_own": None if p.own is None else p.own.tv,
                "tv_transferred": p.transferred.tv,
                "shared_nucleus_own": None if p.own is None else p.own.shared_nucleus,
                "shared_nucleus_transferred": p.transferred.shared_nucleus,
                "top1_own": None if p.own is None else p.own.top[0].token,
                "top1_transferred": p.transferred.top[0].token,
            }
            for p in self.points
        ]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows())


def _check_pair(source: Trace, target: Trace) -> None:
    a, b = source.layout, target.layout
    if (a.n_layers, a.n_heads, a.parallel) != (b.n_layers, b.n_heads, b.parallel) or source.model_id != target.model_id:
        raise BadSetting(
            f"the traces are of two models ('{source.model_id}' and '{target.model_id}'); compare one model's"
        )


@torch.no_grad()
def transfer(lm: LoadedModel, source: Trace, target: Trace) -> Transfer:
    """Apply ``source``'s strata, edge by edge, to ``target``'s prompt (the same token count at the traced
    positions; :class:`BadSetting` otherwise), with ``lm`` the traces' model, in ``source``'s ablation mode."""
    _check_pair(source, target)
    check_model(lm, source)
    check_model(lm, target)
    if source.layout != target.layout:
        raise BadSetting(
            f"the prompts have {source.layout.n_tokens} and {target.layout.n_tokens} tokens up to their traced "
            "positions: one's subgraphs apply to the other only at the same token count (the component diff "
            "compares traces of any lengths)"
        )
    keep_attention = source.settings.mode == "attention-kept"
    E = source.n_edges
    specs = [MaskSpec(E)] + [MaskSpec(s.n_edges, keep_attention=keep_attention) for s in source.strata]
    probes = probe_ids(lm, target)
    with holding(lm, lambda frac, msg: None):
        ids = torch.tensor([target.token_ids], device=lm.device)
        ranks = EdgeRanks.from_orders(source.layout, [np.asarray(source.order)], lm.device)
        logits = masked_logits(lm.instrumentation, ids, ranks, specs, target.settings.batch_size)
        del ranks
        q = torch.softmax(logits, -1)
        outputs = summaries(lm, q[0], q[1:], probes, target.settings.top_k)
    own = {s.n_edges: s.trace for s in target.strata}
    points = [TransferPoint(s.size, s.n_edges, own.get(s.n_edges), out) for s, out in zip(source.strata, outputs)]
    actual = [p.n_edges / E for p in points]
    axis = target.settings.density_axis
    return Transfer(
        source_prompt=source.prompt,
        target_prompt=target.prompt,
        source_tokens=list(source.tokens),
        target_tokens=list(target.tokens),
        mode=source.settings.mode,
        points=points,
        density=density(actual, [p.transferred.tv for p in points], axis),
        own_density=target.density,
    )


@dataclass
class SizeDiff:
    """One size of two traces: the components with edges in both (``both``), in ``A``'s only (``only_a``),
    in ``B``'s only (``only_b``), and ``jaccard = |both| / |A or B|`` (1 when neither has any)."""

    size: float
    edges_a: int
    edges_b: int
    both: list[str]
    only_a: list[str]
    only_b: list[str]
    jaccard: float


@dataclass
class TraceDiff:
    """Two traces of one model compared by component at each size both evaluated (:func:`diff_traces`)."""

    model_id: str
    prompt_a: str
    prompt_b: str
    sizes: list[SizeDiff]

    def rows(self) -> list[dict]:
        """One row per size: edges of each, the counts of components in both and in one only, Jaccard."""
        return [
            {
                "size": d.size,
                "edges_a": d.edges_a,
                "edges_b": d.edges_b,
                "both": len(d.both),
                "only_a": len(d.only_a),
                "only_b": len(d.only_b),
                "jaccard": d.jaccard,
            }
            for d in self.sizes
        ]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows())


def _key(name: str) -> tuple[int, int, int]:
    """Components in model order: layer, then heads before the MLP, then head."""
    if name.startswith("m"):
        return int(name[1:]), 1, 0
    layer, head = name[1:].split(".h")
    return int(layer), 0, int(head)


def diff_traces(a: Trace, b: Trace) -> TraceDiff:
    """Compare two traces of one model (any prompt lengths) at each size evaluated in both: which heads and
    MLPs have edges in each trace there."""
    _check_pair(a, b)
    by_size = {round(s.size, 12): s for s in b.strata}
    sizes = []
    for sa in a.strata:
        sb = by_size.get(round(sa.size, 12))
        if sb is None:
            continue
        ca, cb = set(sa.components), set(sb.components)
        union = ca | cb
        sizes.append(
            SizeDiff(
                size=sa.size,
                edges_a=sa.n_edges,
                edges_b=sb.n_edges,
                both=sorted(ca & cb, key=_key),
                only_a=sorted(ca - cb, key=_key),
                only_b=sorted(cb - ca, key=_key),
                jaccard=len(ca & cb) / len(union) if union else 1.0,
            )
        )
    if not sizes:
        raise BadSetting("the two traces share no evaluated size: trace both on one size grid")
    return TraceDiff(a.model_id, a.prompt, b.prompt, sizes)


@dataclass
class PromptPair:
    """Two prompts traced alike (:func:`trace_pair`): ``a`` and ``b``, ``a``'s strata applied to ``b``
    (``transfer``, ``None`` when their token counts differ) and the component ``diff``."""

    a: Trace
    b: Trace
    transfer: Transfer | None
    diff: TraceDiff

    def to_dict(self) -> dict:
        """The two traces' settings and summaries (without edge orders), the transfer and the diff."""
        return {
            "a": self.a.to_dict(order=False),
            "b": self.b.to_dict(order=False),
            "transfer": None if self.transfer is None else asdict(self.transfer),
            "diff": asdict(self.diff),
        }


def trace_pair(
    lm: LoadedModel,
    prompt_a: str,
    prompt_b: str,
    settings: Settings | None = None,
    position: int | None = None,
    position_b: int | None = None,
    progress=None,
) -> PromptPair:
    """Trace ``prompt_a`` (at ``position``) and ``prompt_b`` (at ``position_b``; default: the same as
    ``position``) with ``settings`` (controls off), apply ``a``'s strata to ``b`` when their token counts
    agree, and diff their components."""
    settings = replace(settings or Settings(), controls=False, compare_modes=False)
    report = progress or (lambda frac, msg: None)
    a = trace_prompt(lm, prompt_a, settings, position=position, progress=lambda f, m: report(0.45 * f, f"A: {m}"))
    b_position = position if position_b is None else position_b
    b = trace_prompt(
        lm, prompt_b, settings, position=b_position, progress=lambda f, m: report(0.45 + 0.45 * f, f"B: {m}")
    )
    return pair_traces(lm, a, b, progress=lambda f, m: report(0.9 + 0.1 * f, m))


def pair_traces(lm: LoadedModel, a: Trace, b: Trace, progress=None) -> PromptPair:
    """The :class:`PromptPair` of two traces of ``lm`` already computed alike: ``a``'s strata applied to
    ``b`` when their token counts agree, and their component diff (what :func:`trace_pair` gives)."""
    report = progress or (lambda frac, msg: None)
    moved = None
    if a.layout == b.layout:
        report(0.0, "A's subgraphs on B")
        moved = transfer(lm, a, b)
    report(1.0, "done")
    return PromptPair(a, b, moved, diff_traces(a, b))
