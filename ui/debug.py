"""The debug panel (``debug_panel = true`` in the configuration): a sweep's per-stage timings, the
process's memory, the sweep cache's contents and the models loaded, under an expander."""

from __future__ import annotations

import streamlit as st

from explorer.sweep_cache import Sweep
from ui.state import LOADED, app_config, sweep_store


def process_memory_mb() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def debug_panel(sweep: Sweep | None = None) -> None:
    """Per-stage timings, memory and the caches' contents, when the configuration turns it on."""
    if not app_config().debug_panel:
        return
    import torch

    with st.expander("Debug", expanded=False):
        if sweep is not None:
            st.markdown("**Timings of this sweep (s)**")
            st.json({k: round(v, 4) for k, v in sweep.trace.timings.items()} | {"model load": round(sweep.load_s, 3)})
        mem = {"process RSS (MiB)": round(process_memory_mb(), 1)}
        if torch.cuda.is_available():
            mem["GPU allocated (MiB)"] = round(torch.cuda.memory_allocated() / 2**20, 1)
            mem["GPU peak (MiB)"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        st.markdown("**Memory**")
        st.json(mem)
        store = sweep_store()
        st.markdown(
            f"**Sweep cache**: {len(store.items)} of {store.max_entries} entries, "
            f"{store.nbytes / 2**20:.1f} of {store.max_bytes / 2**20:.0f} MiB"
        )
        st.dataframe(
            [
                {
                    "model": r.model,
                    "prompt": r.prompt[:60],
                    "weights": r.settings.weighting,
                    "mode": r.settings.mode,
                    "MiB": round(s.nbytes / 2**20, 2),
                }
                for r, s in list(store.items.items())
            ],
            hide_index=True,
        )
        st.markdown("**Models loaded**")
        st.json({name: f"{seconds:.1f} s" for name, seconds in LOADED.items()})
