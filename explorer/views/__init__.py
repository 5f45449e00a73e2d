"""Pure builders for the app's views: data frames, Altair charts and networkx graphs drawn with vis-network.

Nothing here imports Streamlit or torch; the pages under ``ui/pages/`` lay the views out. Every Trace page
builder takes a :class:`explorer.results.Trace` and the index of a stratum (the slider's position);
:mod:`charts` gives the same views to notebooks, addressed by size; :mod:`method` holds the Method page's
figures; :mod:`corpus_tables`, :mod:`scatter` and :mod:`corpus_curves` the Corpus and Compare pages'.
:mod:`style` is the look they share (colours, the size axis, phase shading, the size rule), :mod:`labels`
the names and helpers they share (sizes, tokens, variants, modes, a trace's edges).
"""
