"""s-Trace Explorer: the "Trace a prompt" page (minimal until the Trace page issue lands)."""

import streamlit as st

from explorer import DEFAULT_MODEL, ExplorerError, Settings, load_model, trace_prompt
from explorer.export import table_rows

st.set_page_config(page_title="s-Trace Explorer", layout="wide")
st.title("s-Trace Explorer")

model_id = st.sidebar.text_input("Model", DEFAULT_MODEL)
prompt = st.sidebar.text_area("Prompt", "The capital of France is")


@st.cache_resource(show_spinner="Loading model...")
def _model(model_id: str):
    return load_model(model_id)


if st.sidebar.button("Trace"):
    try:
        trace = trace_prompt(_model(model_id), prompt, Settings(controls=True))
    except ExplorerError as exc:
        st.error(str(exc))
    else:
        st.metric("Density", f"{trace.density:.3f}")
        st.dataframe(table_rows(trace))
