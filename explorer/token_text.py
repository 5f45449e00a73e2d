"""How one token is written for people: its decoded text, except where the token holds only part of a
character's UTF-8 bytes (an emoji or CJK character cut over several tokens), which decodes to "\ufffd";
those bytes are written ``<0xF0>``, and the whole characters around them as themselves.

The bytes come from the token's vocabulary entry: byte-level BPE entries (GPT-2, Llama 3, Qwen, SmolLM2)
through the GPT-2 byte alphabet, SentencePiece byte-fallback entries (Gemma, Llama 2) as written
(``<0xF0>``). A tokenizer that offers neither keeps its decoded text.
"""

from __future__ import annotations

import re
from functools import lru_cache

REPLACEMENT = "\ufffd"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """The GPT-2 byte alphabet, character -> byte: printable bytes stand for themselves, the others for
    the characters from U+0100 up, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def show_bytes(raw: bytes) -> str:
    """``raw`` as text: its valid UTF-8 as itself, each byte of an incomplete character as ``<0xF0>``."""
    text = raw.decode("utf-8", errors="surrogateescape")
    return "".join(f"<0x{ord(c) - 0xDC00:02X}>" if "\udc80" <= c <= "\udcff" else c for c in text)


def piece_bytes(piece: str) -> bytes | None:
    """The bytes of a vocabulary entry: ``<0xF0>`` pieces (SentencePiece byte fallback), or a byte-level
    BPE entry written in the GPT-2 byte alphabet; ``None`` when it is neither."""
    found = _BYTE_PIECE.fullmatch(piece)
    if found:
        return bytes([int(found.group(1), 16)])
    alphabet = byte_decoder()
    if piece and all(c in alphabet for c in piece):
        return bytes(alphabet[c] for c in piece)
    return None


def token_text(tokenizer, token_id: int) -> str:
    """The text of one token (``tokenizer.decode``), its incomplete UTF-8 bytes written ``<0xF0>``."""
    text = tokenizer.decode([token_id])
    assert isinstance(text, str)  # decode returns a list only for a batch of sequences
    if REPLACEMENT not in text:
        return text
    to_piece = getattr(tokenizer, "convert_ids_to_tokens", None)
    piece = to_piece(token_id) if to_piece is not None else None
    raw = piece_bytes(piece) if isinstance(piece, str) else None
    if raw is None or REPLACEMENT.encode() in raw:
        return text
    return show_bytes(raw)
