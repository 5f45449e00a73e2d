"""The model selectbox's entries as the pages share them: the configuration's models, then, where the
configuration allows other models, an entry for a hub id or local folder typed in; and a model named in
the URL put into a page's selectbox (``preset_key``) or, when it is another model, its text box."""

from __future__ import annotations

import streamlit as st

from explorer.config import AppConfig

OTHER = "other: hub id or local folder"


def model_options(cfg: AppConfig) -> list[str]:
    """The selectbox's entries."""
    return list(cfg.models) + ([OTHER] if cfg.allow_other_models else [])


def choose_model(cfg: AppConfig, model: str, preset_key: str, text_key: str) -> None:
    """Select ``model`` (from the URL): a configured model, or, where other models are allowed, the
    ``OTHER`` entry with ``model`` typed in. Where they are not, it is set as it is, and the page's sidebar
    says it is not offered."""
    if model in cfg.models or not cfg.allow_other_models:
        st.session_state[preset_key] = model
    else:
        st.session_state[preset_key], st.session_state[text_key] = OTHER, model
