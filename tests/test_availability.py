"""Where a model loads from, known before loading it (embedded, a local folder, the local Hugging Face
cache, or the network), and a hub model that is neither cached nor reachable refused at once with a clear
message, before the hub client is asked (it would retry for about 25 s)."""

from __future__ import annotations

import pytest

from explorer.errors import ModelNotFound
from explorer.models import availability as av
from explorer.models import hub
from explorer.models.loading import EMBEDDED, load_model, load_tokenizer


def fake_hub_cache(root, repo: str, files: list[str]) -> str:
    """A Hugging Face cache folder holding ``files`` of ``repo`` at its ``main`` revision."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")
    return str(root)


def test_where_each_kind_of_model_loads_from(tmp_path):
    for key in EMBEDDED:
        assert av.availability(key).where == av.EMBEDDED_HERE and av.availability(key).here
    assert av.availability(str(tmp_path)).label == f"{tmp_path} · local folder"
    cache = fake_hub_cache(tmp_path / "hub", "org/cached", ["config.json", "model.safetensors"])
    fake_hub_cache(tmp_path / "hub", "org/no-weights", ["config.json"])
    cached = av.availability("org/cached", hub_cache=cache)
    assert cached.where == av.CACHED and cached.here and cached.label == "org/cached · in the local cache"
    for repo in ("org/no-weights", "org/elsewhere", "not a//valid id"):
        found = av.availability(repo, hub_cache=cache)
        assert found.where == av.NETWORK and not found.here and found.note == "needs the network"


def test_an_embedded_model_without_its_package_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(av, "_package_dir", lambda package: None)
    monkeypatch.setenv("STRACE_CACHE", str(tmp_path))  # nothing converted there either
    assert av.availability("gemma3-270m").where == av.NOT_INSTALLED


@pytest.fixture
def unreachable(monkeypatch):
    """No network and no HF_HUB_OFFLINE; any call into the hub client fails the test."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: False)

    def asked(*args, **kwargs):
        raise AssertionError("the hub client was asked")

    for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"):
        monkeypatch.setattr(f"transformers.{name}.from_pretrained", asked)


def test_an_uncached_hub_model_fails_at_once_offline(unreachable):
    for load in (lambda: load_model("org/not-here", device="cpu"), lambda: load_tokenizer("org/not-here")):
        with pytest.raises(ModelNotFound) as refused:
            load()
        message = str(refused.value)
        assert "'org/not-here' is not in this machine's Hugging Face cache" in message
        assert "cannot be reached (no network)" in message and "smollm2-135m" in message and "\n" not in message


def test_hub_offline_is_said_as_such(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: pytest.fail("probed"))
    with pytest.raises(ModelNotFound, match=r"set offline \(HF_HUB_OFFLINE\)") as refused:
        hub.require_hub("org/not-here", here=["a-model"])
    assert str(refused.value).endswith("choose a model available here (embedded: a-model)")
    load_tokenizer("smollm2-135m")  # an embedded model loads from its folder, without a look at the hub


def test_the_probe_is_remembered_and_a_proxy_is_trusted(monkeypatch):
    calls = []

    def refuse(address, timeout):
        calls.append(address)
        raise OSError("no route")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    monkeypatch.setattr(hub, "_probed", {})
    for var in hub.PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    assert not hub.hub_reachable() and not hub.hub_reachable()
    assert calls == [("hub.example", 8443)]  # once: the answer is kept
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub.hub_reachable()
