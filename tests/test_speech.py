"""Speech track: phones, visemes, voice activity, coarticulated targets, calibration, cache."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from dubline.core.errors import InvalidInputError, InvalidRateError
from dubline.stages.media import AudioClip
from dubline.stages.speech import analyse as analyse_module
from dubline.stages.speech import analyse_speech, calibrate_speaker, openness_track
from dubline.stages.speech.calibration import fit_calibration
from dubline.stages.speech.phones import PhoneSegment, decode_phones, phone_set
from dubline.stages.speech.targets import frame_targets
from dubline.stages.speech.visemes import PHONE_VISEMES, REST, VISEMES
from scipy.signal import lfilter

SR = 16000
#: (formant Hz, bandwidth Hz) of five vowels (a, i, u, e, o; Peterson & Barney averages).
VOWEL_FORMANTS = [
    ((730, 90), (1090, 110), (2440, 170)),
    ((270, 60), (2290, 100), (3010, 150)),
    ((300, 60), (870, 80), (2240, 120)),
    ((530, 70), (1840, 100), (2480, 150)),
    ((570, 70), (840, 80), (2410, 150)),
]


def synth_vowel(seconds: float, formants, f0: float, seed: int) -> np.ndarray:
    """A glottal pulse train through three formant resonators, with vibrato and a 50 ms ramp."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 3 * t)) * np.clip(1 + 0.01 * rng.standard_normal(n), 0.97, 1.03)
    pulses = np.diff(np.floor(np.cumsum(f) / SR), prepend=0.0)
    y = lfilter([1], [1, -0.97], pulses)
    for centre, bandwidth in formants:
        r = np.exp(-np.pi * bandwidth / SR)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * centre / SR), r * r], y)
    y *= np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def synth_syllables(count: int) -> np.ndarray:
    """Vowel 'syllables' of 180 ms with 60 ms gaps: speech-like enough for silero-vad."""
    parts = []
    for i in range(count):
        parts.append(synth_vowel(0.18, VOWEL_FORMANTS[i % 5], 110 + 25 * np.sin(i), seed=i))
        parts.append(np.zeros(int(0.06 * SR), np.float32))
    return np.concatenate(parts)


def clip(samples: np.ndarray) -> AudioClip:
    return AudioClip(np.asarray(samples, np.float32), SR)


def test_viseme_table_covers_every_phone_the_decoder_can_emit() -> None:
    phones = phone_set()
    assert {"AA", "B", "M", "P", "ZH", "SIL", "+NSN+", "+SPN+"} <= set(phones)
    assert len(phones) >= 42
    missing = [p for p in phones if p not in PHONE_VISEMES]
    assert not missing, f"no viseme for {missing}"
    for names in PHONE_VISEMES.values():
        for name in names:
            target = VISEMES[name].target
            assert all(0.0 <= v <= 1.0 for v in (target.openness, target.width, target.rounding))
            assert target.closure in (0.0, 1.0)


@pytest.mark.parametrize("noise", [0.0, 1e-4])
def test_silence_gives_a_resting_closed_mouth_and_no_voice(noise: float) -> None:
    samples = np.random.default_rng(1).normal(0, noise, 3 * SR) if noise else np.zeros(3 * SR)
    track = analyse_speech(clip(samples), rate=Fraction(25), frame_count=75)
    rest = VISEMES[REST].target
    assert track.speech_segments == []
    assert float(track.voice_activity.max()) == 0.0
    assert float(track.speech_probability.max()) < 0.2
    assert set(track.viseme) == {REST}
    np.testing.assert_allclose(track.openness, rest.openness, atol=1e-6)
    np.testing.assert_allclose(track.closure, 1.0, atol=1e-6)


def test_voiced_signal_opens_the_mouth_where_there_is_voice() -> None:
    voiced = synth_syllables(8)  # 1.92 s
    samples = np.concatenate([np.zeros(SR), voiced, np.zeros(SR)])
    track = analyse_speech(clip(samples), rate=Fraction(25), frame_count=98)
    centres = (np.arange(98) + 0.5) / 25
    inside = (centres > 1.1) & (centres < 2.8)
    outside = (centres < 0.8) | (centres > 3.2)
    assert track.voice_activity[inside].mean() > 0.9
    assert track.voice_activity[outside].max() == 0.0
    # Between syllables the decoder hears gaps and fricatives, so the voiced mean is well below 1.
    assert track.openness[inside].mean() > 0.2
    assert track.openness[inside].max() > 0.6
    assert track.openness[outside].max() < 0.05
    # The QC openness track (phones only) agrees.
    qc = openness_track(track.phones, rate=Fraction(25), frame_count=98)
    assert qc[inside].mean() > qc[outside].mean() + 0.3


def test_phones_of_real_english_dub(shared_media) -> None:
    from dubline.stages.media import read_audio

    audio = read_audio(shared_media / "dub_en_16k.wav", None, rate=SR, mono=True)
    duration = audio.samples.shape[0] / SR
    phones = decode_phones(audio.samples, SR)
    assert len(phones) > 30
    starts = np.array([p.start_s for p in phones])
    ends = np.array([p.end_s for p in phones])
    assert np.all(ends > starts)
    assert np.all(starts[1:] >= ends[:-1] - 1e-9)
    assert starts[0] >= 0 and ends[-1] <= duration + 1e-9
    vowels = [p for p in phones if VISEMES[PHONE_VISEMES[p.phone][0]].target.openness >= 0.5]
    assert len(vowels) > 10


@pytest.mark.parametrize(
    ("policy", "seconds", "expect"),
    [
        ("pad_or_trim", 1.0, "padded"),
        ("pad_or_trim", 3.0, "trimmed"),
        ("pad", 1.0, "padded"),
        ("pad", 3.0, InvalidInputError),
        ("trim", 3.0, "trimmed"),
        ("trim", 1.0, InvalidInputError),
        ("error", 1.0, InvalidInputError),
        ("error", 3.0, InvalidInputError),
        ("error", 2.002, None),  # within half a frame of the span: fine under any policy
    ],
)
def test_length_policy(policy: str, seconds: float, expect) -> None:
    rate = Fraction(24000, 1001)
    frame_count = 48  # 2.002 s
    samples = np.random.default_rng(2).normal(0, 1e-3, int(round(seconds * SR)))
    if expect is InvalidInputError:
        with pytest.raises(InvalidInputError) as raised:
            analyse_speech(clip(samples), rate=rate, frame_count=frame_count, length_policy=policy)
        assert f"{seconds:.2f} s" in str(raised.value) and "2.00 s" in str(raised.value)
        return
    track = analyse_speech(clip(samples), rate=rate, frame_count=frame_count, length_policy=policy)
    for per_frame in (track.openness, track.width, track.rounding, track.closure, track.viseme,
                      track.phone, track.phone_index, track.voice_activity, track.speech_probability):
        assert per_frame.shape == (frame_count,)
    if expect is None:
        assert track.warnings == []
    else:
        assert len(track.warnings) == 1 and expect in track.warnings[0]
        assert all(p.end_s <= min(seconds, track.duration_s) + 1e-9 for p in track.phones)


def test_bad_policy_rate_and_sample_rate_are_refused() -> None:
    samples = np.zeros(SR)
    with pytest.raises(InvalidInputError, match="length_policy"):
        analyse_speech(clip(samples), rate=Fraction(25), frame_count=25, length_policy="stretch")
    with pytest.raises(InvalidRateError):
        analyse_speech(clip(samples), rate=Fraction(0), frame_count=25)
    with pytest.raises(InvalidRateError, match="48000 Hz"):
        analyse_speech(AudioClip(np.zeros(48000, np.float32), 48000), rate=Fraction(25), frame_count=25)


def _vowel_closure_vowel(rate: Fraction, frame_count: int):
    phones = [PhoneSegment("AA", 0.0, 0.5), PhoneSegment("M", 0.5, 0.6), PhoneSegment("AA", 0.6, 1.2)]
    return frame_targets(phones, [(0.0, 1.2)], rate=rate, frame_count=frame_count)


def test_coarticulation_is_continuous_and_anticipatory() -> None:
    rate = Fraction(100)  # fine sampling to look at the shape
    targets = _vowel_closure_vowel(rate, 120)
    openness = targets.openness.astype(np.float64)
    steps = np.abs(np.diff(openness))
    # Bounded frame-to-frame change; the lips snap shut/open only at the closure's edges.
    assert np.sort(steps)[-3] < 0.1
    assert steps.max() < 0.5
    assert np.all(openness[50:60] == 0.0) and np.all(targets.closure[50:60] == 1.0)
    # Anticipation: 50 ms before the closure the mouth has closed more than 50 ms after it.
    assert openness[44] < openness[65] - 0.1
    # Far from the closure the vowel's own target is (nearly) reached.
    assert openness[10] > 0.95 and openness[115] > 0.95
    # At video rate the closure between frame centres is still reached in one frame.
    video = _vowel_closure_vowel(Fraction(24000, 1001), 29)
    assert video.closure.max() == 1.0 and video.openness.min() == 0.0


def test_vad_silence_overrides_phones() -> None:
    phones = [PhoneSegment("AA", 0.0, 2.0)]
    targets = frame_targets(phones, [(0.0, 0.8)], rate=Fraction(25), frame_count=50)
    assert targets.openness[:15].mean() > 0.9
    assert targets.openness[30:].max() < 0.01  # well inside the silence: at rest
    assert set(targets.viseme[25:]) == {REST}


def test_calibration_maps_targets_onto_the_speakers_range() -> None:
    rng = np.random.default_rng(3)
    n = 200
    openness = np.clip(rng.random(n), 0, 1)
    width = np.clip(rng.random(n), 0, 1)
    voice = np.ones(n)
    # This speaker: aperture 0.05 .. 0.25 with noise, video one frame behind the audio.
    aperture = np.roll(0.05 + 0.2 * openness + rng.normal(0, 0.01, n), 1)
    measured_width = 0.8 + 0.1 * width + rng.normal(0, 0.005, n)
    aperture[::17] = np.nan  # frames without a usable face
    calibration = fit_calibration(aperture, measured_width, openness, width, voice)
    assert calibration.fallback_reason is None
    assert calibration.lag_frames == 1 and calibration.correlation > 0.9
    assert calibration.aperture.at_zero == pytest.approx(0.05, abs=0.02)
    assert calibration.aperture.at_one == pytest.approx(0.25, abs=0.02)
    assert calibration.width.at_zero == pytest.approx(0.8, abs=0.01)
    assert calibration.width.at_one == pytest.approx(0.9, abs=0.01)
    mapped_aperture, mapped_width = calibration.apply(np.array([0.0, 1.0, 5.0]), np.array([0.0, 1.0, -5.0]))
    assert mapped_aperture[0] < mapped_aperture[1]
    # Far outside the targets' range the result stays near what the speaker was seen to do.
    assert mapped_aperture[2] <= np.nanmax(aperture) + 0.1 * (np.nanmax(aperture) - np.nanmin(aperture)) + 1e-6
    assert mapped_width[2] >= measured_width.min() - 0.1 * np.ptp(measured_width) - 1e-6
    # Too little speech: documented defaults, with the reason.
    silent = fit_calibration(aperture, measured_width, openness, width, np.zeros(n))
    assert silent.fallback_reason is not None and "speech frames" in silent.fallback_reason
    assert silent.aperture.at_one > silent.aperture.at_zero


def test_calibration_from_a_speech_track() -> None:
    samples = np.concatenate([np.zeros(SR // 2), synth_syllables(12), np.zeros(SR // 2)])
    frame_count = int(samples.shape[0] / SR * 25)
    track = analyse_speech(clip(samples), rate=Fraction(25), frame_count=frame_count)
    aperture = 0.02 + 0.3 * track.openness
    width = 0.7 + 0.2 * track.width
    calibration = calibrate_speaker(aperture, width, track)
    assert calibration.fallback_reason is None and calibration.lag_frames == 0
    assert calibration.aperture.at_zero == pytest.approx(0.02, abs=0.01)
    assert calibration.aperture.at_one == pytest.approx(0.32, abs=0.01)
    with pytest.raises(InvalidInputError, match="one length"):
        calibrate_speaker(aperture[:-1], width, track)


def test_cache_hit_returns_an_equal_track_without_recomputing(tmp_path, monkeypatch) -> None:
    samples = np.concatenate([np.zeros(SR // 2), synth_syllables(4), np.zeros(SR // 2)])
    first = analyse_speech(clip(samples), rate=Fraction(25), frame_count=50, cache=tmp_path)
    assert len(first.warnings) == 1  # 1.96 s of audio over a 2 s span: padded
    # Recomputing would now fail loudly.
    monkeypatch.setattr(analyse_module, "decode_phones", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(analyse_module, "detect_voice", lambda *a, **k: pytest.fail("recomputed"))
    second = analyse_speech(clip(samples), rate=Fraction(25), frame_count=50, cache=tmp_path)
    assert second == first and second is not first
    # Different content or parameters are a different key.
    with pytest.raises(pytest.fail.Exception):
        analyse_speech(clip(samples * 0.5), rate=Fraction(25), frame_count=50, cache=tmp_path)
    with pytest.raises(pytest.fail.Exception):
        analyse_speech(clip(samples), rate=Fraction(25), frame_count=49, cache=tmp_path)


def test_visemes_doc_renders_the_table_in_code() -> None:
    from pathlib import Path

    from dubline.stages.speech.visemes import viseme_table_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "VISEMES.md"
    assert viseme_table_markdown() in doc.read_text(encoding="utf-8")
