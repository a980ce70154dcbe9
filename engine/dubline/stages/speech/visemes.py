"""Phones -> visemes -> target mouth states: the table the speech track is built on.

**Phone set.** pocketsphinx's en-us phone LM (``en-us-phone.lm.bin``) emits the 39 CMU/ARPAbet
phones plus ``SIL``; its acoustic model adds two fillers, ``+NSN+`` (non-speech noise) and
``+SPN+`` (speech-like noise). Every one of them is mapped here (``tests/test_speech.py`` reads the
phone list out of the wheel and checks it).

**Visemes.** The grouping follows the MPEG-4 facial-animation visemes (ISO/IEC 14496-2, Annex C:
p b m / f v / th dh / t d / k g / ch jh sh / s z / n l / r / and the vowel classes), which is also
the grouping animators use (Preston Blair's mouth chart). Vowels get one viseme per class of the
IPA vowel chart so openness can follow vowel height. Diphthongs map to two visemes (start, end),
split 60/40 over the phone's duration by ``targets.py``.

**Target mouth state** of each viseme, all on 0..1 scales that are *ordinal*, not millimetres
(``calibration.py`` maps them onto each speaker's own measured range):

- ``openness``: inner-lip aperture / jaw opening. Vowels follow vowel height on the IPA chart
  (open AA 1.0 > AE 0.8 > AO 0.75 > AH 0.6 > EH 0.55 > OH 0.5 > ER/IH 0.35 > UH 0.3 > IY 0.2 >
  UW 0.15); consonants follow how far the jaw has to close for the constriction (velars and glottal
  stay fairly open, alveolars and dentals half-closed, sibilants and labiodentals nearly closed,
  bilabials shut).
- ``width``: mouth-corner spread. Spread vowels (IY, IH, AE, EH) wide; rounded vowels and the
  rounded consonants (W, R, SH-class, which are protruded in English) narrow; others neutral 0.5.
- ``rounding``: lip protrusion/rounding (IPA roundedness; English postalveolars and R are rounded).
- ``closure``: 1 where the lips must touch (bilabials, and the resting mouth), else 0. Closure is
  kept separate from ``openness == 0`` because a closure must be *reached* (a renderer should press
  the lips shut), while a small openness is only approached.

``dominance`` is the coarticulation strength of the viseme (Cohen & Massaro 1993 dominance
functions, see ``targets.py``): bilabial closures, labiodentals and rounding are visible
gestures that neighbours cannot override (high), vowels are medium, and sounds made behind the
lips (K G NG HH, T D N L) borrow their lip shape from neighbours (low).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MouthState:
    """A target mouth shape on ordinal 0..1 scales (see the module docstring)."""

    openness: float
    width: float
    rounding: float
    closure: float


@dataclass(frozen=True)
class Viseme:
    name: str
    target: MouthState
    dominance: float
    description: str


#: The resting mouth used for silence and non-speech noise: lips lightly together, relaxed.
REST = "REST"

VISEMES: dict[str, Viseme] = {
    v.name: v
    for v in (
        Viseme(REST, MouthState(0.0, 0.45, 0.1, 1.0), 1.0, "silence: lips together, relaxed"),
        Viseme("PBM", MouthState(0.0, 0.45, 0.1, 1.0), 3.0, "bilabial closure (p b m)"),
        Viseme("FV", MouthState(0.1, 0.5, 0.0, 0.0), 2.0, "lower lip to upper teeth (f v)"),
        Viseme("TH", MouthState(0.25, 0.5, 0.0, 0.0), 0.8, "tongue between teeth (th dh)"),
        Viseme("TDNL", MouthState(0.25, 0.5, 0.0, 0.0), 0.5, "alveolar (t d n l)"),
        Viseme("KG", MouthState(0.35, 0.5, 0.0, 0.0), 0.4, "velar/glottal (k g ng hh)"),
        Viseme("SZ", MouthState(0.1, 0.6, 0.0, 0.0), 1.0, "sibilant, teeth close (s z)"),
        Viseme("CHJ", MouthState(0.2, 0.35, 0.6, 0.0), 1.5, "postalveolar, protruded (ch jh sh zh)"),
        Viseme("R", MouthState(0.2, 0.35, 0.55, 0.0), 1.2, "r, slightly rounded"),
        Viseme("W", MouthState(0.15, 0.2, 0.9, 0.0), 2.0, "w, tight rounding"),
        Viseme("AA", MouthState(1.0, 0.55, 0.1, 0.0), 1.0, "open back vowel (aa)"),
        Viseme("AE", MouthState(0.8, 0.7, 0.0, 0.0), 1.0, "open front vowel (ae)"),
        Viseme("AO", MouthState(0.75, 0.4, 0.6, 0.0), 1.0, "open-mid rounded (ao)"),
        Viseme("AH", MouthState(0.6, 0.5, 0.1, 0.0), 1.0, "mid central vowel (ah)"),
        Viseme("EH", MouthState(0.55, 0.65, 0.0, 0.0), 1.0, "open-mid front vowel (eh)"),
        Viseme("OH", MouthState(0.5, 0.35, 0.75, 0.0), 1.0, "close-mid rounded, start of ow"),
        Viseme("ER", MouthState(0.35, 0.4, 0.5, 0.0), 1.0, "r-coloured vowel (er)"),
        Viseme("IH", MouthState(0.35, 0.75, 0.0, 0.0), 1.0, "near-close front vowel (ih)"),
        Viseme("UH", MouthState(0.3, 0.35, 0.6, 0.0), 1.0, "near-close rounded (uh)"),
        Viseme("IY", MouthState(0.2, 0.85, 0.0, 0.0), 1.0, "close front spread (iy, y)"),
        Viseme("UW", MouthState(0.15, 0.25, 0.9, 0.0), 1.5, "close back rounded (uw)"),
        Viseme("NEUTRAL", MouthState(0.4, 0.5, 0.2, 0.0), 0.5, "unidentified speech sound"),
    )
}

#: Phone -> visemes it passes through (two for diphthongs: start, end).
PHONE_VISEMES: dict[str, tuple[str, ...]] = {
    # silence and fillers
    "SIL": (REST,),
    "+NSN+": (REST,),  # breath, click, room noise: not speech, mouth at rest
    "+SPN+": ("NEUTRAL",),  # speech the model could not label: a middling shape is least wrong
    # stops, nasals, fricatives, affricates, approximants
    "P": ("PBM",), "B": ("PBM",), "M": ("PBM",),
    "F": ("FV",), "V": ("FV",),
    "TH": ("TH",), "DH": ("TH",),
    "T": ("TDNL",), "D": ("TDNL",), "N": ("TDNL",), "L": ("TDNL",),
    "K": ("KG",), "G": ("KG",), "NG": ("KG",), "HH": ("KG",),
    "S": ("SZ",), "Z": ("SZ",),
    "CH": ("CHJ",), "JH": ("CHJ",), "SH": ("CHJ",), "ZH": ("CHJ",),
    "R": ("R",),
    "W": ("W",),
    "Y": ("IY",),
    # monophthongs
    "AA": ("AA",), "AE": ("AE",), "AH": ("AH",), "AO": ("AO",), "EH": ("EH",),
    "ER": ("ER",), "IH": ("IH",), "IY": ("IY",), "UH": ("UH",), "UW": ("UW",),
    # diphthongs
    "AW": ("AA", "UW"), "AY": ("AA", "IY"), "EY": ("EH", "IY"), "OW": ("OH", "UW"), "OY": ("AO", "IY"),
}

#: Share of a diphthong's duration spent on its first viseme (the nucleus is the longer part).
DIPHTHONG_SPLIT = 0.6

#: Visemes that count as vowels / lip closures in the measurements (docs/SPEECH.md).
VOWEL_VISEMES = frozenset({"AA", "AE", "AO", "AH", "EH", "OH", "ER", "IH", "UH", "IY", "UW"})
CLOSURE_VISEMES = frozenset({"PBM"})


def visemes_of(phone: str) -> tuple[str, ...]:
    """The visemes of a pocketsphinx phone label; unknown labels get the neutral shape."""
    return PHONE_VISEMES.get(phone, ("NEUTRAL",))


def is_vowel(phone: str) -> bool:
    return visemes_of(phone)[0] in VOWEL_VISEMES


def is_closure(phone: str) -> bool:
    return visemes_of(phone)[0] in CLOSURE_VISEMES


def viseme_table_markdown() -> str:
    """The tables rendered as Markdown (docs/VISEMES.md is generated from this)."""
    by_viseme: dict[str, list[str]] = {name: [] for name in VISEMES}
    for phone, names in PHONE_VISEMES.items():
        for position, name in enumerate(names):
            suffix = "" if len(names) == 1 else (" (start)" if position == 0 else " (end)")
            by_viseme[name].append(phone + suffix)
    lines = [
        "| viseme | phones | openness | width | rounding | closure | dominance | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, viseme in VISEMES.items():
        t = viseme.target
        phones = ", ".join(by_viseme[name]) or "—"
        lines.append(
            f"| {name} | {phones} | {t.openness:g} | {t.width:g} | {t.rounding:g} | "
            f"{t.closure:g} | {viseme.dominance:g} | {viseme.description} |"
        )
    return "\n".join(lines) + "\n"
