"""dubline_client.choices: the bridges' backend and codec menus, read from the engine's Capabilities,
and the fallback they show before an engine answers (checked here against a live engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dubline_client import EngineClient, pb
from dubline_client.choices import (
    FALLBACK,
    CodecChoice,
    UnknownChoiceError,
    from_capabilities,
)


def _capabilities(address: str) -> pb.CapabilitiesResponse:
    with EngineClient(address) as client:
        return client.capabilities()


def test_the_fallback_is_what_a_live_engine_offers(in_process_engine: str) -> None:
    offered = _capabilities(in_process_engine)
    engine = from_capabilities(offered)
    # Every codec, exactly as the engine describes it (a codec comes with the engine release) ...
    assert FALLBACK.codecs == engine.codecs, "update dubline_client.choices.FALLBACK to the engine's patch codecs"
    assert (FALLBACK.default_backend, FALLBACK.default_codec) == (offered.default_backend, offered.default_codec)
    # ... and of the backends only the default, described as the engine describes it.
    assert FALLBACK.backends == (engine.backend(offered.default_backend),)
    assert engine.from_engine and not FALLBACK.from_engine


def test_capabilities_name_each_codec_suffix_and_the_defaults(in_process_engine: str) -> None:
    from dubline.stages import media

    offered = _capabilities(in_process_engine)
    assert [c.name for c in offered.patch_codecs] == list(offered.codecs) == list(media.PATCH_CODECS)
    for codec in offered.patch_codecs:
        assert tuple(codec.suffixes) == media.PATCH_CODECS[codec.name].suffixes and codec.label
    assert (offered.default_backend, offered.default_codec) == ("retrieval", "prores")


def test_an_extra_backend_reaches_the_choices(extra_backend: str, in_process_engine: str) -> None:
    choices = from_capabilities(_capabilities(in_process_engine))
    assert choices.backend(extra_backend).description == "a backend no bridge can know"
    assert choices.backend().name == "retrieval"  # empty: the engine's default
    with pytest.raises(UnknownChoiceError, match=rf"unknown backend 'x'; the engine offers retrieval, .*{extra_backend}"):
        choices.backend("x")


def test_an_engine_without_codec_details_still_gives_suffixes() -> None:
    old = pb.CapabilitiesResponse(backends=[pb.BackendCapability(name="retrieval")], codecs=["ffv1", "prores", "newcodec"])
    choices = from_capabilities(old)
    assert choices.codec("ffv1").suffix == ".mkv" and choices.codec("prores").label == "ProRes 422 HQ"
    assert choices.codec("newcodec") == CodecChoice("newcodec", "newcodec")
    assert (choices.default_backend, choices.default_codec) == ("retrieval", "prores")
    with pytest.raises(UnknownChoiceError, match="no backends or no patch codecs"):
        from_capabilities(pb.CapabilitiesResponse(codecs=["prores"]))


def test_a_backend_with_either_of_two_weight_files_is_ready(tmp_path: Path, monkeypatch, in_process_engine: str) -> None:
    """wav2lip takes wav2lip_gan.pth or wav2lip.pth: either one is enough (bridges show the flag)."""
    monkeypatch.setenv("DUBLINE_MODELS", str(tmp_path / "models"))
    assert not from_capabilities(_capabilities(in_process_engine)).backend("wav2lip").weights_present
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "wav2lip.pth").write_bytes(b"")
    assert from_capabilities(_capabilities(in_process_engine)).backend("wav2lip").weights_present
