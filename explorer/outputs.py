"""What the masked passes are measured by: each subgraph's distribution summarised against the full
model's (:class:`explorer.results.Output`: TV, shared nucleus, entropy, top tokens, and the probes'
probabilities), on the device, moved to the host in one transfer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from explorer.inputs import token_text
from explorer.metrics import entropy, shared_nucleus, tie_rtol, total_variation
from explorer.models.loading import LoadedModel
from explorer.results import Output, TokenProb


@dataclass
class Probes:
    """Token ids measured in every output besides TV: ``gold`` (cross-entropy), ``target`` and ``foil``."""

    gold: int | None = None
    target: int | None = None
    foil: int | None = None


def summaries(lm: LoadedModel, p: torch.Tensor, q: torch.Tensor, probes: Probes, k: int) -> list[Output]:
    """Summaries of ``q [B, V]`` against ``p [V]``, computed on the device and moved to the host in one
    transfer (a float64 table ``[B, 7 + 3k]``; token ids are exact in float64)."""
    top_p, top_i = q.topk(k, dim=-1)
    at = lambda i: q[:, i].double() if i is not None else torch.full_like(q[:, 0], float("nan"), dtype=torch.float64)
    columns = [
        total_variation(p, q),
        shared_nucleus(p, q, tie_rtol(lm.dtype)),
        entropy(q),
        -torch.log(at(probes.gold).clamp_min(1e-45)),
        at(probes.target),
        at(probes.foil),
        torch.log(at(probes.target).clamp_min(1e-300)) - torch.log(at(probes.foil).clamp_min(1e-300)),
    ]
    table = (
        torch.cat(
            [
                torch.stack([c.double() for c in columns], 1),
                top_p.double(),
                top_i.double(),
                q[:, p.topk(k).indices].double(),
            ],
            1,
        )
        .cpu()
        .numpy()
    )
    tv, nuc, ent, ce, target, foil, diff = table[:, :7].T
    top_p, top_i, at_full_top = table[:, 7 : 7 + k], table[:, 7 + k : 7 + 2 * k].astype(np.int64), table[:, 7 + 2 * k :]
    text = {i: token_text(lm, i) for i in set(top_i.ravel().tolist())}  # subgraphs share most
    given = lambda i, x: None if i is None else float(x)
    return [
        Output(
            [TokenProb(text[i], i, float(pr)) for i, pr in zip(top_i[b].tolist(), top_p[b])],
            float(ent[b]),
            float(tv[b]),
            int(nuc[b]),
            given(probes.gold, ce[b]),
            [float(x) for x in at_full_top[b]],
            given(probes.target, target[b]),
            given(probes.foil, foil[b]),
            given(probes.foil if probes.target is not None else None, diff[b]),
        )
        for b in range(len(table))
    ]
