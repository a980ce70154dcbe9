"""Phones with times from pocketsphinx's all-phone decoder (en-us acoustic model + phone LM).

The wheel ships the en-us acoustic model and a phone trigram LM (``en-us-phone.lm.bin``);
all-phone search decodes a phone sequence without a dictionary, so it also yields usable vowel /
closure timing for speech that is not English (measured in docs/SPEECH.md).

Input is 16 kHz mono float32; pocketsphinx wants 16-bit PCM at 100 feature frames per second.
Long audio is decoded as several utterances cut at silences (``cut_points_s``), so batch cepstral
mean normalisation sees a sensible stretch and cancellation can happen between utterances.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np

from dubline.core.errors import InvalidInputError
from dubline.core.progress import CancelToken

SAMPLE_RATE = 16000
#: pocketsphinx's feature frame rate (frames per second), fixed by the en-us model's config.
FRAMES_PER_SECOND = 100


class PhoneSegment(NamedTuple):
    """One decoded phone: label (ARPAbet, SIL or a +FILLER+) and its span in seconds."""

    phone: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class PhoneDecoderParams:
    """All-phone search settings (the values pocketsphinx's documentation gives for phone decoding)."""

    language_weight: float = 2.0
    beam: float = 1e-20
    phone_beam: float = 1e-20
    #: Longest utterance handed to the decoder in one piece (seconds).
    max_utterance_s: float = 30.0


@lru_cache(maxsize=1)
def model_paths() -> tuple[str, str]:
    """(acoustic model directory, phone LM file) inside the pocketsphinx wheel."""
    import pocketsphinx

    return (
        pocketsphinx.get_model_path("en-us/en-us"),
        pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"),
    )


def _new_decoder(params: PhoneDecoderParams):
    import pocketsphinx

    acoustic_model, phone_lm = model_paths()
    # A decoder per call: construction costs milliseconds and a Decoder is not thread-safe.
    return pocketsphinx.Decoder(
        hmm=acoustic_model,
        allphone=phone_lm,
        lw=params.language_weight,
        beam=params.beam,
        pbeam=params.phone_beam,
        dict=None,
        loglevel="ERROR",
    )


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 [-1, 1] -> int16, with a fixed ±1 LSB dither.

    Digital silence (exact zeros) makes the acoustic model's noise removal divide by nothing and
    hallucinate a fricative; a deterministic dither keeps results reproducible (and cacheable).
    """
    dither = np.random.default_rng(0).integers(-1, 2, size=samples.shape[0])
    scaled = np.clip(np.rint(samples.astype(np.float64) * 32768.0) + dither, -32768, 32767)
    return scaled.astype(np.int16)


def _utterance_bounds(
    n_samples: int, cut_points_s: Sequence[float], max_utterance_s: float
) -> list[tuple[int, int]]:
    """Split [0, n) into pieces no longer than max_utterance_s, preferring the given cut points."""
    limit = int(max_utterance_s * SAMPLE_RATE)
    cuts = sorted(int(round(t * SAMPLE_RATE)) for t in cut_points_s if 0 < t * SAMPLE_RATE < n_samples)
    bounds: list[tuple[int, int]] = []
    start = 0
    while n_samples - start > limit:
        usable = [c for c in cuts if start < c <= start + limit]
        end = usable[-1] if usable and usable[-1] - start > limit // 4 else start + limit
        bounds.append((start, end))
        start = end
    bounds.append((start, n_samples))
    return bounds


def decode_phones(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    params: PhoneDecoderParams = PhoneDecoderParams(),
    cut_points_s: Sequence[float] = (),
    cancel: CancelToken | None = None,
) -> list[PhoneSegment]:
    """Phones with times (seconds from the first sample) of 16 kHz mono float32 audio.

    Segments are contiguous, in time order and inside [0, duration]. Empty audio gives [].
    """
    if sample_rate != SAMPLE_RATE:
        raise InvalidInputError(
            f"phone decoding needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz "
            "(read it with dubline.stages.media.read_audio(..., rate=16000, mono=True))"
        )
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise InvalidInputError(f"phone decoding needs mono audio, got shape {samples.shape}")
    duration_s = samples.shape[0] / SAMPLE_RATE
    if samples.shape[0] < SAMPLE_RATE // FRAMES_PER_SECOND * 3:
        return []
    pcm = to_pcm16(samples)
    decoder = _new_decoder(params)
    phones: list[PhoneSegment] = []
    for start, end in _utterance_bounds(pcm.shape[0], cut_points_s, params.max_utterance_s):
        if cancel is not None:
            cancel.check()
        offset_s = start / SAMPLE_RATE
        decoder.start_utt()
        decoder.process_raw(pcm[start:end].tobytes(), False, True)
        decoder.end_utt()
        for segment in decoder.seg():
            begin = offset_s + segment.start_frame / FRAMES_PER_SECOND
            finish = offset_s + (segment.end_frame + 1) / FRAMES_PER_SECOND
            # Keep the sequence contiguous and inside the audio whatever frame rounding did.
            begin = max(begin, phones[-1].end_s if phones else 0.0)
            finish = min(finish, end / SAMPLE_RATE, duration_s)
            if finish > begin:
                phones.append(PhoneSegment(segment.word, begin, finish))
    return phones


def phone_set() -> list[str]:
    """Every label the phone decoder can emit: the phone LM's vocabulary plus the model's fillers.

    Read from the files in the wheel (the LM written out as ARPA text; the noise dictionary), so
    it follows whatever model the installed pocketsphinx ships.
    """
    import os
    import tempfile

    import pocketsphinx

    acoustic_model, phone_lm = model_paths()
    config = pocketsphinx.Config()
    model = pocketsphinx.NGramModel(config, pocketsphinx.LogMath(), phone_lm)
    labels: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        arpa = os.path.join(scratch, "phone.arpa")
        model.write(arpa, model.str_to_type("arpa"))
        with open(arpa, encoding="utf-8") as handle:
            in_unigrams = False
            for line in handle:
                line = line.strip()
                if line.startswith("\\"):
                    in_unigrams = line == "\\1-grams:"
                    continue
                fields = line.split()
                if in_unigrams and len(fields) >= 2:
                    labels.add(fields[1])
    with open(os.path.join(acoustic_model, "noisedict"), encoding="utf-8") as handle:
        labels.update(line.split()[1] for line in handle if len(line.split()) >= 2)
    return sorted(label for label in labels if not label.startswith("<"))
