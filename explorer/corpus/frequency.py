"""Unigram token frequencies: how often each token id occurs in a corpus tokenised with the model's own
tokenizer. Stored beside a run's results (``frequency.parquet``) and used to colour the scatter and to ask
whether small subgraphs predict frequent tokens (METHOD.md section 7)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from explorer.atomic import atomic_write
from explorer.errors import BadResults

FILE = "frequency.parquet"


@dataclass
class Frequencies:
    """``counts [V]``: occurrences of each token id in ``source``, tokenised with ``tokenizer``'s model."""

    source: str
    tokenizer: str
    counts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def per_million(self, token_ids) -> np.ndarray:
        """Occurrences per million tokens of each id (0 for ids outside the vocabulary)."""
        ids = np.asarray(token_ids, dtype=np.int64)
        inside = (ids >= 0) & (ids < len(self.counts))
        out = np.zeros(ids.shape, dtype=np.float64)
        out[inside] = self.counts[ids[inside]] * (1e6 / max(self.total, 1))
        return out

    def label(self) -> str:
        """What ``run.json`` records of these counts: their source and the SHA-256 of the counts."""
        digest = hashlib.sha256(f"{self.tokenizer}\x00{len(self.counts)}\x00".encode())
        digest.update(np.ascontiguousarray(self.counts, dtype=np.int64).tobytes())
        return f"{self.source} (sha256 {digest.hexdigest()[:16]})"

    def save(self, folder: Path) -> Path:
        """Write ``frequency.parquet`` in ``folder`` atomically and durably (non-zero counts only, with
        page checksums)."""
        nz = np.nonzero(self.counts)[0]
        table = pa.table({"token_id": pa.array(nz, pa.int64()), "count": pa.array(self.counts[nz], pa.int64())})
        table = table.replace_schema_metadata(
            {"source": self.source, "tokenizer": self.tokenizer, "vocab": str(len(self.counts))}
        )
        path = Path(folder) / FILE
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, write_page_checksum=True), durable=True)
        return path

    @classmethod
    def load(cls, folder: Path) -> Frequencies | None:
        """The frequencies saved in ``folder``; ``None`` if it has none."""
        path = Path(folder) / FILE
        if not path.exists():
            return None
        try:
            table = pq.read_table(path, page_checksum_verification=True)
        except Exception as exc:
            raise BadResults(f"{path} is not a readable Parquet file ({exc})") from exc
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        if set(table.column_names) != {"token_id", "count"} or "vocab" not in meta:
            raise BadResults(f"{path} is not an s-Trace frequency table")
        counts = np.zeros(int(meta["vocab"]), dtype=np.int64)
        ids = table["token_id"].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= len(counts)):
            raise BadResults(f"{path} holds token ids outside its vocabulary")
        counts[ids] = table["count"].to_numpy()
        return cls(meta.get("source", "?"), meta.get("tokenizer", "?"), counts)


def count_tokens(tokenizer, texts, vocab_size: int, source: str, tokenizer_name: str, chunk: int = 512) -> Frequencies:
    """Unigram counts of ``texts`` (an iterable of strings) under ``tokenizer``, without special tokens."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    batch: list[str] = []

    def flush():
        if batch:
            encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
            ids = np.concatenate([np.asarray(x, dtype=np.int64) for x in encoded] + [np.zeros(0, np.int64)])
            counts[:] += np.bincount(ids[(ids >= 0) & (ids < vocab_size)], minlength=vocab_size)
            batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= chunk:
            flush()
    flush()
    return Frequencies(source, tokenizer_name, counts)
