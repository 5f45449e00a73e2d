"""User text shown where Streamlit renders Markdown (``st.error``, ``st.warning``, ``st.info``,
``st.success``, ``st.caption``, ``st.markdown``, and the labels, values and tooltips of widgets and
metrics): model ids, prompts and tokens, paths, source names, and error messages that embed them. Each
helper gives Markdown that renders as the text itself, with no link, image, HTML, directive or emphasis
coming from it.

- :func:`escape_md`: the text with every Markdown special backslash-escaped, for text within prose
  (prompts, tokens);
- :func:`code`: the text as an inline code span (a fence longer than any run of backticks in it), for
  identifiers, paths and messages;
- :func:`plain`: the text unchanged where it holds only characters that form no Markdown (letters,
  digits, spaces and ``,;'"?%/()-.`` and a colon before a space), else :func:`code`: model ids and error
  messages read as prose in the common case and stay literal otherwise.

No Streamlit here: pure functions of strings.
"""

from __future__ import annotations

import re

ZERO_WIDTH = "\u200b"
_SPECIALS = frozenset("\\`*_{}[]()#+-.!|<>~$=^&")
_PLAIN = re.compile(r"[A-Za-z0-9 ,;'\"?%/().:-]*")
_RISKY = re.compile(r"www\.|:(?! |$)|^-|^\d+[.)]", re.IGNORECASE)


def escape_md(text: str) -> str:
    """``text`` shown as itself where Streamlit renders Markdown: Markdown punctuation (``\\ ` * _ { } [ ]
    ( ) # + - . ! | < > ~ $ = ^ &``) backslash-escaped, and directives (``:emoji:``, ``:red[...]``) and
    ``scheme:`` autolinks broken by a zero-width space after each colon."""
    return "".join("\\" + ch if ch in _SPECIALS else ch + ZERO_WIDTH if ch == ":" else ch for ch in str(text))


def code(text: str) -> str:
    """``text`` as an inline code span, shown literally (nothing inside a code span is Markdown): fenced
    by one more backtick than its longest run of backticks, padded by a space where it starts or ends
    with a backtick or a space; line breaks become spaces (as a code span shows them)."""
    text = str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if not text.strip():
        return '""' if not text else f"`{text}`"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def is_plain(text: str) -> bool:
    """Whether ``text`` renders as itself in Markdown as it is (see :func:`plain`)."""
    text = str(text)
    return _PLAIN.fullmatch(text) is not None and _RISKY.search(text) is None


def plain(text: str) -> str:
    """``text`` unchanged where it forms no Markdown (:func:`is_plain`), else as a code span
    (:func:`code`)."""
    text = str(text)
    return text if is_plain(text) else code(text)
