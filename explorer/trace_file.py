"""Read a saved trace back: the JSON of :meth:`explorer.results.Trace.to_json` (and
:func:`explorer.export.write_json`) becomes the same :class:`~explorer.results.Trace`, edge order
included, so every view draws without the model.

Whatever else is given gets one clear :class:`~explorer.errors.BadTraceFile`: a file over the size cap,
bytes that are not UTF-8, text that is not JSON or is cut short, JSON that is not a trace (a text strip,
an attribution graph, anything else), a trace of another schema version, or a trace whose fields are
missing, of the wrong type or inconsistent with its graph (the message names the field). numpy only.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from explorer.edges import EdgeLayout
from explorer.errors import BadTraceFile, ExplorerError
from explorer.options import VARIANTS
from explorer.order_codec import OrderError, decode_order
from explorer.results import TRACE_SCHEMA, TRACE_SCHEMA_VERSION, Output, Settings, Stratum, TokenProb, Trace

MAX_TRACE_BYTES = 200 * 2**20
"""The default size cap of a trace file (200 MiB; a 256-token trace of a 30-layer model is about 50 MiB)."""


class _Damaged(Exception):
    """A field of a trace JSON that is missing or wrong; ``str`` is ``where: why``."""


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _check_size(n_bytes: int, max_bytes: int) -> None:
    if n_bytes > max_bytes:
        raise BadTraceFile(f"the trace file is {_mib(n_bytes)}, over the cap of {_mib(max_bytes)}")


def _text_of(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadTraceFile(f"not a trace JSON: byte {exc.start} is not UTF-8 text") from None


_LITERALS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")


def _cut_value(rest: str) -> bool:
    """Whether ``rest``, what the parser could not read up to the end of the text, is the start of a
    value cut short: part of a literal (``nu``) or the end of a number (``0.``, ``1e-``)."""
    if any(word.startswith(rest) for word in _LITERALS):
        return True
    return re.fullmatch(r"[.eE][0-9eE+-]*", rest) is not None


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        end = len(text.rstrip())
        if end == 0:
            raise BadTraceFile("not a trace JSON: the file is empty") from None
        if exc.pos >= end or exc.msg.startswith("Unterminated string") or _cut_value(text[exc.pos : end]):
            raise BadTraceFile(f"the trace JSON is truncated: it stops after {len(text)} characters") from None
        raise BadTraceFile(f"not a trace JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise BadTraceFile("not a trace JSON: it is nested too deeply") from None


def _kind_of(data: dict) -> str | None:
    """What a JSON object without a trace schema looks like, for the message."""
    if {"metadata", "nodes", "links"} <= set(data):
        return "an attribution graph (the Neuronpedia layout), not a trace"
    if "positions" in data and "traces" in data:
        return "a text strip (every position of a text), not a single trace"
    if "strata" in data and "prompt" in data:
        return "a trace saved before trace files had a schema version; trace the prompt again to save it"
    if "edges" in data and "nodes" in data:
        return "a component edge list, not a trace"
    return None


def _check_schema(data: object) -> dict:
    if not isinstance(data, dict):
        raise BadTraceFile(f"not a trace JSON: the file holds a JSON {type(data).__name__}, not an object")
    if "schema" not in data:
        kind = _kind_of(data)
        raise BadTraceFile(f"not a trace JSON: {kind}" if kind else "not a trace JSON: it has no 'schema' field")
    if data["schema"] != TRACE_SCHEMA:
        raise BadTraceFile(f"not a trace JSON: its schema is {str(data['schema'])[:80]!r}, not {TRACE_SCHEMA!r}")
    version = data.get("schema_version")
    if version != TRACE_SCHEMA_VERSION:
        raise BadTraceFile(
            f"the trace JSON is of schema version {str(version)[:20]}; this version of the explorer reads "
            f"version {TRACE_SCHEMA_VERSION}"
        )
    return data


def _get(obj: dict, key: str, where: str, *kinds: type, optional: bool = False) -> Any:
    """``obj[key]`` checked to be of one of ``kinds`` (``float`` takes ints too; ``int`` refuses bools;
    ``None`` allowed when ``optional``)."""
    if key not in obj:
        raise _Damaged(f"{where}.{key}: missing")
    value = obj[key]
    if value is None and optional:
        return None
    for kind in kinds:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind not in (int, float) and isinstance(value, kind):
            return value
    names = " or ".join(k.__name__ for k in kinds) + (" or null" if optional else "")
    raise _Damaged(f"{where}.{key}: expected {names}, got {type(value).__name__}")


def _object(obj: dict, key: str, where: str) -> dict:
    return _get(obj, key, where, dict)


def _output(d: object, where: str) -> Output:
    if not isinstance(d, dict):
        raise _Damaged(f"{where}: expected an object")
    top = []
    for i, item in enumerate(_get(d, "top", where, list)):
        if not isinstance(item, dict):
            raise _Damaged(f"{where}.top[{i}]: expected an object")
        at = f"{where}.top[{i}]"
        top.append(TokenProb(_get(item, "token", at, str), _get(item, "id", at, int), _get(item, "prob", at, float)))
    values: dict = {"top": top}
    for f in fields(Output):
        if f.name == "top" or f.name not in d:
            continue
        if f.name == "shared_nucleus":
            values[f.name] = _get(d, f.name, where, int)
        elif f.name == "full_top_probs":
            probs = _get(d, f.name, where, list)
            values[f.name] = [_get({"p": p}, "p", f"{where}.{f.name}", float) for p in probs]
        elif f.name in ("entropy", "tv"):
            values[f.name] = _get(d, f.name, where, float)
        else:
            values[f.name] = _get(d, f.name, where, float, optional=True)
    if "entropy" not in values:
        raise _Damaged(f"{where}.entropy: missing")
    return Output(**values)


def _counts(d: dict, key: str, where: str) -> dict[str, int]:
    counts = _object(d, key, where)
    return {str(k): _get(counts, k, f"{where}.{key}", int) for k in counts}


def _settings(d: dict) -> Settings:
    raw = _object(d, "settings", "trace")
    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in raw.items() if k in known}
    if "sizes" in values:
        values["sizes"] = tuple(_get({"s": s}, "s", "trace.settings.sizes", float) for s in values["sizes"])
    try:
        return Settings(**values)
    except ExplorerError as exc:
        raise _Damaged(f"trace.settings: {exc}") from None


def _layout(d: dict) -> EdgeLayout:
    g = _object(d, "graph", "trace")
    dims = [_get(g, k, "trace.graph", int) for k in ("layers", "heads", "tokens")]
    if min(dims) < 1:
        raise _Damaged(f"trace.graph: layers, heads and tokens must be at least 1, got {dims}")
    if math.prod(dims) * dims[2] > 2**40:
        raise _Damaged(f"trace.graph: a graph of {dims} is too large")
    layout = EdgeLayout(*dims, parallel=bool(_get(g, "parallel_residual", "trace.graph", bool)))
    if _get(g, "edges", "trace.graph", int) != layout.n_edges:
        raise _Damaged(f"trace.graph.edges: {g['edges']} edges where the graph's shape gives {layout.n_edges}")
    return layout


def _strata(d: dict, n_edges: int) -> list[Stratum]:
    strata = []
    for i, s in enumerate(_get(d, "strata", "trace", list)):
        where = f"trace.strata[{i}]"
        if not isinstance(s, dict):
            raise _Damaged(f"{where}: expected an object")
        outputs = {}
        for variant, out in _object(s, "outputs", where).items():
            if variant not in VARIANTS:
                raise _Damaged(f"{where}.outputs: unknown variant {variant[:40]!r}")
            outputs[variant] = _output(out, f"{where}.outputs.{variant}")
        if "trace" not in outputs:
            raise _Damaged(f"{where}.outputs.trace: missing")
        stratum = Stratum(
            size=_get(s, "size", where, float),
            n_edges=_get(s, "n_edges", where, int),
            outputs=outputs,
            kinds=_counts(s, "kinds", where),
            components=_counts(s, "components", where),
        )
        if not 0 < stratum.n_edges <= n_edges or (strata and stratum.n_edges < strata[-1].n_edges):
            raise _Damaged(f"{where}.n_edges: {stratum.n_edges} is not in ascending order within the graph's {n_edges}")
        strata.append(stratum)
    return strata


def _trace(d: dict) -> Trace:
    settings = _settings(d)
    layout = _layout(d)
    model = _object(d, "model", "trace")
    tokens = _get(d, "tokens", "trace", list)
    token_ids = _get(d, "token_ids", "trace", list)
    if not all(isinstance(t, str) for t in tokens):
        raise _Damaged("trace.tokens: expected a list of text")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in token_ids):
        raise _Damaged("trace.token_ids: expected a list of token ids")
    if len(tokens) != layout.n_tokens or len(token_ids) != layout.n_tokens:
        raise _Damaged(
            f"trace.tokens: {len(tokens)} tokens and {len(token_ids)} ids for a graph of {layout.n_tokens} tokens"
        )
    position = _get(d, "position", "trace", int)
    if position != layout.n_tokens - 1:
        raise _Damaged(f"trace.position: {position}, where the traced tokens end at {layout.n_tokens - 1}")
    recovery = _object(d, "recovery", "trace")
    try:
        levels = {int(k): _get(recovery, k, "trace.recovery", float, optional=True) for k in recovery}
    except ValueError:
        raise _Damaged("trace.recovery: its keys must be nucleus levels (whole numbers)") from None
    timings = _object(d, "timings", "trace")
    if "order" not in d:
        raise _Damaged("trace.order: missing (the trace was saved without its edge order)")
    try:
        order, weights = decode_order(d["order"], layout.n_edges, layout.n_ids)
    except OrderError as exc:
        raise _Damaged(f"trace.{exc}") from None
    return Trace(
        model_id=_get(model, "id", "trace.model", str),
        revision=_get(model, "revision", "trace.model", str, optional=True),
        prompt=_get(d, "prompt", "trace", str),
        tokens=tokens,
        token_ids=token_ids,
        gold=_get(d, "gold", "trace", str, optional=True),
        settings=settings,
        layout=layout,
        full=_output(d.get("full"), "trace.full"),
        strata=_strata(d, layout.n_edges),
        density=_get(d, "density", "trace", float),
        recovery=levels,
        timings={str(k): _get(timings, k, "trace.timings", float) for k in timings},
        order=order,
        order_weights=weights,
        position=position,
        next_token=_get(d, "next_token", "trace", str, optional=True),
        target=_get(d, "target", "trace", str, optional=True),
        foil=_get(d, "foil", "trace", str, optional=True),
    )


def loads_trace(data: str | bytes, max_bytes: int = MAX_TRACE_BYTES) -> Trace:
    """The :class:`Trace` in ``data``, the text or bytes of a trace JSON (an upload), at most
    ``max_bytes`` long; anything else raises :class:`BadTraceFile` with one clear message."""
    _check_size(len(data), max_bytes)
    parsed = _check_schema(_parse(_text_of(data)))
    try:
        return _trace(parsed)
    except _Damaged as exc:
        raise BadTraceFile(f"the trace JSON is damaged: {exc}") from None


def read_trace(path: str | os.PathLike, max_bytes: int = MAX_TRACE_BYTES) -> Trace:
    """:func:`loads_trace` of the file at ``path``; its size is checked before it is read."""
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise BadTraceFile(f"no trace file at {str(file)!r}") from None
    except OSError as exc:
        raise BadTraceFile(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    if not file.is_file():
        raise BadTraceFile(f"{str(file)!r} is not a file")
    _check_size(size, max_bytes)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BadTraceFile(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    return loads_trace(data, max_bytes)
