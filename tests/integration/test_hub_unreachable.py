"""A machine whose network cannot reach the Hugging Face hub (its name does not resolve), without HF_HUB_OFFLINE:
a model in the cache loads from it and one that is not fails at once with the reason, instead of after
huggingface_hub's five retries (23 s of "Retrying in 8s" lines for `labkit generate … --model foo/bar`)."""

from __future__ import annotations

import json
import socket

import pytest

from labkit.catalog import Catalog
from labkit.errors import ModelNotCached
from labkit.pipelines.loader import resolve_model


@pytest.fixture
def no_dns(monkeypatch, tmp_path):
    """The hub's host name does not resolve (every lookup of it is counted); an empty hub cache of our own."""
    from huggingface_hub import constants

    real = socket.getaddrinfo
    lookups = []

    def getaddrinfo(host, *args, **kwargs):
        if host == "huggingface.co":
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return {"lookups": lookups, "cache": tmp_path / "hub"}


def test_a_model_not_in_the_cache_fails_at_once_naming_the_unresolved_hub(no_dns):
    with pytest.raises(ModelNotCached) as err:
        resolve_model("someone/some-model", Catalog.load(use_env=False))
    assert "cannot resolve huggingface.co" in str(err.value) and "hf download someone/some-model" in err.value.fix
    # labkit's one question, and huggingface_hub's own once-a-process fetch of its agent registry; the download
    # itself is never tried (before: six tries, 1+2+4+8+8 s apart)
    assert len(no_dns["lookups"]) <= 2


def test_a_model_in_the_cache_is_read_from_it_without_the_hub(no_dns):
    snapshot = no_dns["cache"] / "models--someone--some-model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    (no_dns["cache"] / "models--someone--some-model" / "refs").mkdir()
    (no_dns["cache"] / "models--someone--some-model" / "refs" / "main").write_text("0" * 40)
    ref = resolve_model("someone/some-model", Catalog.load(use_env=False))
    assert ref.family == "sdxl" and len(no_dns["lookups"]) <= 2
