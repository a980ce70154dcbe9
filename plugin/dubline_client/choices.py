"""What a bridge may offer in its backend and codec menus: the engine's answer to Capabilities.

Standard library only: ``from_capabilities`` reads a ``pb.CapabilitiesResponse`` by attribute, so a
bridge that cannot import grpc yet (Blender before its environment is set) still has ``FALLBACK``.

The engine is the authority. ``FALLBACK`` is what a bridge shows before any engine has answered: the
engine's defaults and every patch codec this release's engine writes (a codec comes with the engine
release), but only the default backend, because whether other backends can run (their weights, a
GPU, an installed extra) is known only to the engine on its machine. ``tests/test_client_choices.py``
checks it against a live engine, so it cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class UnknownChoiceError(ValueError):
    """A backend or codec name the engine does not offer; the message lists what it offers."""


@dataclass(frozen=True)
class BackendChoice:
    name: str                               # what RenderSpec.backend takes
    description: str = ""
    weights_present: bool = True            # False: it would fail for missing weights on this engine
    prefers_gpu: bool = False
    missing_weights: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """For menus: "Retrieval", "Wav2Lip"."""
        return self.name.replace("_", " ").title()


@dataclass(frozen=True)
class CodecChoice:
    name: str                               # what RenderSpec.codec takes
    label: str                              # for menus: "ProRes 422 HQ"
    description: str = ""
    suffixes: tuple[str, ...] = (".mov",)   # the engine accepts these file suffixes, preferred first
    alpha: bool = False

    @property
    def suffix(self) -> str:
        """The suffix a bridge gives a new patch file."""
        return self.suffixes[0]


@dataclass(frozen=True)
class EngineChoices:
    backends: tuple[BackendChoice, ...]
    codecs: tuple[CodecChoice, ...]
    default_backend: str
    default_codec: str
    from_engine: bool = True                # False: FALLBACK, no engine has answered

    @property
    def backend_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.backends)

    @property
    def codec_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.codecs)

    def backend(self, name: str = "") -> BackendChoice:
        """The backend called ``name`` (empty: the default); ``UnknownChoiceError`` otherwise."""
        wanted = name or self.default_backend
        for backend in self.backends:
            if backend.name == wanted:
                return backend
        raise UnknownChoiceError(f"unknown backend {wanted!r}; {self._who()} offers {', '.join(self.backend_names)}")

    def codec(self, name: str = "") -> CodecChoice:
        """The patch codec called ``name`` (empty: the default); ``UnknownChoiceError`` otherwise."""
        wanted = name or self.default_codec
        for codec in self.codecs:
            if codec.name == wanted:
                return codec
        raise UnknownChoiceError(f"unknown patch codec {wanted!r}; {self._who()} offers {', '.join(self.codec_names)}")

    def _who(self) -> str:
        return "the engine" if self.from_engine else "this release of dubline"


FALLBACK = EngineChoices(
    backends=(BackendChoice("retrieval", "weight-free: the speaker's own mouth images from their footage, re-timed to the dub"),),
    codecs=(
        CodecChoice("prores", "ProRes 422 HQ", "10-bit 4:2:2"),
        CodecChoice("prores4444", "ProRes 4444", "10-bit 4:4:4, alpha kept", alpha=True),
        CodecChoice("dnxhr", "DNxHR HQ", "8-bit 4:2:2 (HQX 10-bit for deeper sources)"),
        CodecChoice("h264", "H.264", "4:2:0 (High 10 for deeper sources), small files for review", (".mov", ".mp4")),
        CodecChoice("ffv1", "FFV1", "lossless RGB, 8 or 16-bit", (".mkv",), alpha=True),
        CodecChoice("png", "PNG", "lossless RGB, 8 or 16-bit, one image per frame", alpha=True),
    ),
    default_backend="retrieval",
    default_codec="prores",
    from_engine=False,
)


def from_capabilities(response: Any) -> EngineChoices:
    """The choices in a ``pb.CapabilitiesResponse``.

    An engine older than the ``patch_codecs`` and ``default_*`` fields sends only codec names: their
    labels and suffixes then come from ``FALLBACK`` where it knows the name (else the name and
    ``.mov``), and the defaults are the fallback's when the engine offers them, else its first.
    """
    backends = tuple(
        BackendChoice(b.name, b.description, bool(b.weights_present), bool(b.prefers_gpu), tuple(b.missing_weights))
        for b in response.backends
    )
    codecs = tuple(
        CodecChoice(c.name, c.label or c.name, c.description, tuple(c.suffixes) or (".mov",), bool(c.alpha))
        for c in getattr(response, "patch_codecs", ())
    )
    if not codecs:
        known = {c.name: c for c in FALLBACK.codecs}
        codecs = tuple(known.get(name, CodecChoice(name, name)) for name in response.codecs)
    if not backends or not codecs:
        raise UnknownChoiceError("the engine reported no backends or no patch codecs")
    return EngineChoices(
        backends=backends,
        codecs=codecs,
        default_backend=_default(getattr(response, "default_backend", ""), FALLBACK.default_backend, [b.name for b in backends]),
        default_codec=_default(getattr(response, "default_codec", ""), FALLBACK.default_codec, [c.name for c in codecs]),
    )


def _default(reported: str, fallback: str, names: list[str]) -> str:
    if reported in names:
        return reported
    return fallback if fallback in names else names[0]
