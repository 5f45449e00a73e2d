"""The Text strip page's views of a :class:`explorer.results.TextTrace`: the text's tokens laid out as
wrapped lines of chips, each coloured by one quantity of the prediction made after it (:func:`chart`, with
a point selection named :data:`SELECTION` on the traced chips, so that a click can open that position's
trace), and the same quantity along the text (:func:`line`).

Token ``t``'s chip shows the prediction after token ``t`` (of token ``t + 1``), as
:attr:`explorer.results.PositionSummary.position` does; the first token has nothing before it to trace.
The quantities (:data:`QUANTITIES`): density, the full model's entropy, the next token's probability, TV
at one evaluated size, and the size at which the full model's top-1 comes back. Tokens are data (Vega
draws them as text, never as markup), shown with their whitespace made visible (:func:`chip_text`).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.results import TextTrace
from explorer.views import style
from explorer.views.labels import format_size

SELECTION = "strip_pick"
QUANTITIES = {
    "density": "density",
    "entropy": "entropy",
    "next_token_prob": "next-token probability",
    "tv": "TV at a size",
    "top1_back": "top-1 comes back at",
}
"""What the chips can be coloured by (key -> the page's name for it)."""


@dataclass(frozen=True)
class Quantity:
    """How one quantity is drawn: its title, colour scale (``log``: a log scale) and whether high values
    are drawn light (``reverse``: a low next-token probability is the dark, surprising end)."""

    title: str
    short: str
    log: bool = False
    reverse: bool = False
    domain: tuple[float, float] | None = None  # fixed; else the text's smallest to largest value
    fmt: str = ".3f"


def quantity(key: str, size: float | None = None, density_axis: str = "log") -> Quantity:
    """The drawing of quantity ``key`` (``size``: the size of ``tv``)."""
    if key == "density":
        over = "log10 s" if density_axis == "log" else "linear s"
        return Quantity(f"density (TV integrated over {over})", "density")
    if key == "entropy":
        return Quantity("full model's entropy (nats)", "entropy (nats)", fmt=".2f")
    if key == "next_token_prob":
        return Quantity(
            "probability of the next token (dark: unlikely)", "P(next token)", reverse=True, domain=(0.0, 1.0)
        )
    if key == "tv":
        at = f"TV at s = {format_size(size) if size else '?'}"
        return Quantity(at, at, domain=(0.0, 1.0))
    if key == "top1_back":
        return Quantity(
            "size s at which the full model's top-1 comes back",
            "top-1 back at s",
            log=True,
            domain=(style.SMALLEST_SHOWN / 10, 1.0),
            fmt=".1e",
        )
    raise ValueError(f"unknown quantity '{key}'; choose one of {', '.join(QUANTITIES)}")


# ------------------------------------------------------------------------------------------ values


def position_tv(text: TextTrace) -> dict[int, dict[float, float]]:
    """Position -> {size: the s-trace's TV}, from the text's kept traces (empty where none were kept)."""
    return {t: {s.size: s.trace.tv for s in tr.strata} for t, tr in text.traces.items()}


def values(
    text: TextTrace, key: str, size: float | None = None, tv: dict[int, dict[float, float]] | None = None
) -> dict[int, float | None]:
    """Position -> the value of quantity ``key`` there (``None`` where it has none: no next token, a size
    too small for that position's graph, a top-1 that never comes back). ``tv``: :func:`position_tv`,
    when the text's traces were not kept."""
    quantity(key, size)  # checks the key
    tv = position_tv(text) if tv is None else tv
    out: dict[int, float | None] = {}
    for p in text.positions:
        if key == "density":
            out[p.position] = p.density if text.settings.density_axis == "log" else p.density_linear
        elif key == "entropy":
            out[p.position] = p.entropy
        elif key == "next_token_prob":
            out[p.position] = p.next_token_prob
        elif key == "tv":
            out[p.position] = None if size is None else tv.get(p.position, {}).get(size)
        else:
            out[p.position] = p.recovery.get(1)
    return out


def value_domain(q: Quantity, known) -> tuple[float, float]:
    """The colour scale's ends: the quantity's fixed ones, else the text's smallest and largest values."""
    known = [float(v) for v in known if math.isfinite(v)]
    if q.domain:
        return q.domain
    if not known:
        return (0.0, 1.0)
    lo, hi = min(known), max(known)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _fraction(value: float, q: Quantity, domain: tuple[float, float]) -> float:
    """Where ``value`` falls on the colour scale, 0 (light) to 1 (dark)."""
    lo, hi = domain
    if q.log:
        value, lo, hi = math.log10(max(value, 1e-12)), math.log10(lo), math.log10(hi)
    frac = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    return 1.0 - frac if q.reverse else frac


# ------------------------------------------------------------------------------------------ layout

WIDTH = 1000  # px: the strip's width, lines wrap there
CHAR_PX = 8.0  # px per character of the chips' monospace font at FONT_SIZE
FONT_SIZE = 13
PAD = 4  # px of chip on each side of its text
SPACE = 7  # px before a token that starts with a space (the gap a word boundary gets)
GAP = 2  # px between chips inside a word
ROW = 28  # px per line
CHIP_H = 22
MAX_CHARS = 24
UNTRACED_FILL, UNTRACED_TEXT, DARK_TEXT, LIGHT_TEXT = "#eeeeee", "#8a8a8a", "#1f1f1f", "#ffffff"


def chip_text(token: str) -> str:
    """A token as its chip shows it: one leading space dropped (the gap before the chip shows it), line
    breaks and tabs as arrows, a blank token as a visible space, and at most :data:`MAX_CHARS` characters."""
    text = token[1:] if token.startswith(" ") else token
    text = text.replace("\r", "").replace("\n", "\u21b5").replace("\t", "\u21e5")
    if not text.strip():
        text = "\u2423" * max(1, len(text))
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "\u2026"


def text_width(text: str) -> float:
    """Pixels of ``text`` in the chips' font: wide (East Asian) characters count twice, combining marks none."""
    cells = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        cells += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return max(cells, 1) * CHAR_PX


def layout(tokens: list[str], width: int = WIDTH) -> pd.DataFrame:
    """One row per token: ``position``, ``chip`` (its text), ``x``, ``x2``, ``y``, ``y2`` (pixels of its
    chip) and ``line``. Chips flow left to right and wrap at ``width``; a token holding a line break ends
    its line."""
    rows, x, line = [], 0.0, 0
    for t, token in enumerate(tokens):
        chip = chip_text(token)
        w = text_width(chip) + 2 * PAD
        gap = (SPACE if token.startswith(" ") else GAP) if x > 0 else 0.0
        if x > 0 and x + gap + w > width:
            x, line, gap = 0.0, line + 1, 0.0
        x0 = x + gap
        y0 = line * ROW + (ROW - CHIP_H) / 2
        rows.append((t, chip, x0, x0 + w, y0, y0 + CHIP_H, line))
        x = x0 + w
        if "\n" in token:
            x, line = 0.0, line + 1
    return pd.DataFrame(rows, columns=["position", "chip", "x", "x2", "y", "y2", "line"])


def _fmt(value: float | None, fmt: str) -> str:
    return "\u2014" if value is None else format(value, fmt)


def frame(
    text: TextTrace,
    key: str = "density",
    size: float | None = None,
    tv: dict[int, dict[float, float]] | None = None,
    width: int = WIDTH,
) -> pd.DataFrame:
    """The strip's table: :func:`layout` of every token of the text, with ``traced`` (the position was
    traced), ``value`` (quantity ``key``, NaN where none), ``shown`` (it as the tooltip gives it),
    ``fill`` (``value`` drawn, else grey), ``ink`` (a readable text colour on the chip), ``generated``
    (the token was generated), and the position's numbers as text: ``token``, ``next_token``,
    ``next_prob``, ``rank``, ``entropy``, ``density``, ``top1``, ``top1_back``."""
    q = quantity(key, size, text.settings.density_axis)
    vals = values(text, key, size, tv)
    domain = value_domain(q, [v for v in vals.values() if v is not None])
    summary = {p.position: p for p in text.positions}
    df = layout(text.tokens, width)
    extra: dict[str, list[Any]] = {
        c: []
        for c in (
            "token",
            "traced",
            "value",
            "shown",
            "frac",
            "ink",
            "generated",
            "next_token",
            "next_prob",
            "rank",
            "entropy",
            "density",
            "top1",
            "top1_back",
        )
    }
    gen_from = text.generated_from
    for t in df["position"].tolist():
        p = summary.get(t)
        v = vals.get(t)
        frac = None if v is None else _fraction(v, q, domain)
        extra["token"].append(repr(text.tokens[t]))
        extra["traced"].append(p is not None)
        extra["value"].append(math.nan if v is None else float(v))
        extra["shown"].append(
            ("never" if key == "top1_back" and p is not None else "\u2014") if v is None else format(v, q.fmt)
        )
        extra["frac"].append(math.nan if frac is None else frac)
        extra["ink"].append(UNTRACED_TEXT if frac is None else LIGHT_TEXT if frac > 0.62 else DARK_TEXT)
        extra["generated"].append(gen_from is not None and t >= gen_from)
        extra["next_token"].append("\u2014" if p is None or p.next_token is None else repr(p.next_token))
        extra["next_prob"].append(_fmt(None if p is None else p.next_token_prob, ".3f"))
        extra["rank"].append("\u2014" if p is None or p.next_token_rank is None else str(p.next_token_rank))
        extra["entropy"].append(_fmt(None if p is None else p.entropy, ".2f"))
        extra["density"].append(
            _fmt(None if p is None else (p.density if text.settings.density_axis == "log" else p.density_linear), ".3f")
        )
        extra["top1"].append("\u2014" if p is None else f"{p.top1!r} ({p.top1_prob:.3f})")
        back = None if p is None else p.recovery.get(1)
        extra["top1_back"].append("\u2014" if p is None else "never" if back is None else f"s = {format_size(back)}")
    for c, col in extra.items():
        df[c] = col
    return df


# ------------------------------------------------------------------------------------------ charts

SCHEME = "yelloworangered"
AUTOSIZE = alt.AutoSizeParams(type="pad", contains="padding")  # the chart's size plus its legend and axes
TOOLTIP = [
    ("token", "token"),
    ("position", "position"),
    ("shown", None),
    ("next_token", "next token"),
    ("next_prob", "its probability"),
    ("rank", "its rank"),
    ("top1", "full model's top-1"),
    ("entropy", "entropy (nats)"),
    ("density", "density"),
    ("top1_back", "top-1 comes back at"),
]


def _tooltip(q: Quantity) -> list[alt.Tooltip]:
    return [alt.Tooltip(f"{f}:N" if f != "position" else "position:Q", title=title or q.title) for f, title in TOOLTIP]


def colour_scale(q: Quantity, domain: tuple[float, float]) -> alt.Scale:
    return alt.Scale(
        scheme=SCHEME, type="log" if q.log else "linear", domain=list(domain), reverse=q.reverse, clamp=True
    )


def _px_x(field: str) -> alt.X:
    """A horizontal position in pixels (no scale, no axis)."""
    return alt.X(f"{field}:Q", scale=None, axis=None)


def _px_y(field: str) -> alt.Y:
    return alt.Y(f"{field}:Q", scale=None, axis=None)


def chart(
    df: pd.DataFrame, key: str = "density", size: float | None = None, density_axis: str = "log", width: int = WIDTH
) -> alt.LayerChart:
    """The strip of :func:`frame`'s table: a chip per token, filled by ``value`` on a colour scale with
    its legend (untraced tokens grey), its text on top, generated tokens underlined; hovering shows the
    position's numbers, and clicking a traced chip selects its ``position`` (:data:`SELECTION`)."""
    q = quantity(key, size, density_axis)
    domain = value_domain(q, df["value"].dropna().tolist())
    height = (int(df["line"].to_numpy().max()) + 1) * ROW if len(df) else ROW
    x, x2, y, y2 = _px_x("x"), alt.X2("x2:Q"), _px_y("y"), alt.Y2("y2:Q")
    base = alt.Chart(df)
    untraced = (
        base.transform_filter("!isValid(datum.value)")
        .mark_rect(cornerRadius=4, color=UNTRACED_FILL)
        .encode(x=x, x2=x2, y=y, y2=y2)
    )
    traced = (
        base.transform_filter("isValid(datum.value)")
        .mark_rect(cornerRadius=4)
        .encode(
            x=x,
            x2=x2,
            y=y,
            y2=y2,
            fill=alt.Fill(
                "value:Q",
                title=q.title,
                scale=colour_scale(q, domain),
                legend=alt.Legend(
                    orient="bottom",
                    direction="horizontal",
                    gradientLength=320,
                    titleLimit=400,
                    format="~g" if not q.log else "~e",
                ),
            ),
        )
    )
    underline = (
        base.transform_filter("datum.generated")
        .transform_calculate(u="datum.y2 + 2")
        .mark_rule(color=DARK_TEXT, strokeWidth=1.5)
        .encode(x=x, x2=x2, y=_px_y("u"))
    )
    words = (
        base.transform_calculate(xc="(datum.x + datum.x2) / 2", yc="(datum.y + datum.y2) / 2")
        .mark_text(font="monospace", fontSize=FONT_SIZE, baseline="middle", align="center")
        .encode(x=_px_x("xc"), y=_px_y("yc"), text="chip:N", color=alt.Color("ink:N", scale=None))
    )
    pick = alt.selection_point(name=SELECTION, fields=["position"], on="click", clear="dblclick")
    hover = alt.selection_point(
        name="strip_hover", fields=["position"], on="pointerover", clear="pointerout", empty=False
    )
    hit = (
        base.transform_filter("datum.traced")
        .mark_rect(cornerRadius=4, fill="transparent", cursor="pointer", stroke=DARK_TEXT)
        .encode(
            x=x,
            x2=x2,
            y=y,
            y2=y2,
            tooltip=_tooltip(q),
            strokeWidth=alt.condition(hover, alt.value(2.0), alt.value(0.0)),
        )
        .add_params(pick, hover)
    )
    layers = alt.layer(untraced, traced, underline, words, hit).resolve_scale(color="independent", fill="independent")
    layers = cast(
        alt.LayerChart,
        layers.properties(
            width=width, height=height, autosize=AUTOSIZE, usermeta={"embedOptions": {"renderer": "svg"}}
        ),
    )
    return layers.configure_view(strokeWidth=0)


def line(
    df: pd.DataFrame,
    key: str = "density",
    size: float | None = None,
    density_axis: str = "log",
    generated_from: int | None = None,
) -> alt.LayerChart:
    """The same quantity along the text: one point per traced position (x: the token's position), its
    token in the tooltip; the generated part shaded."""
    q = quantity(key, size, density_axis)
    part = df[df["value"].notna()]
    y_scale = alt.Scale(type="log") if q.log else alt.Scale(domain=list(q.domain)) if q.domain else alt.Scale()
    n = int(df["position"].to_numpy().max()) if len(df) else 1
    x = alt.X(
        "position:Q",
        title="token position (the prediction after it)",
        scale=alt.Scale(domain=[0, n]),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )
    lines = (
        alt.Chart(part)
        .mark_line(point=alt.OverlayMarkDef(size=30), strokeWidth=1.6, color=style.TRACE_COLOUR)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=q.short, scale=y_scale),
            tooltip=[
                alt.Tooltip("position:Q"),
                alt.Tooltip("token:N"),
                alt.Tooltip("shown:N", title=q.short),
                alt.Tooltip("next_token:N", title="next token"),
            ],
        )
    )
    layers: list[Any] = [lines]
    if generated_from is not None:
        shade = alt.Chart(pd.DataFrame({"start": [generated_from - 0.5], "end": [n + 0.5], "part": ["generated"]}))
        layers.insert(
            0,
            shade.mark_rect(color="#eeeeee", opacity=0.8).encode(
                x=alt.X("start:Q", scale=alt.Scale(domain=[0, n])), x2="end:Q", tooltip=["part:N"]
            ),
        )
    return cast(alt.LayerChart, alt.layer(*layers).properties(width=WIDTH - 80, height=200, autosize=AUTOSIZE))
