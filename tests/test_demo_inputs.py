"""The demo's own inputs: a talking astronaut whose mouth follows its synthetic speech, and a dub
that our speech analysis hears as speech."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from dubline.apps import demo
from dubline.core import landmarks as lm
from dubline.core.errors import InvalidInputError
from dubline.core.timing import frames_to_range, range_to_frames
from dubline.stages import media
from dubline.stages.faces.detect import detect_frame
from dubline.stages.speech.phones import decode_phones
from dubline.stages.speech.vad import detect_voice

RATE = Fraction(25)
SECONDS = 4.0
FRAMES = 100
#: What the files must hold: the plan is a pure function of the arguments make_demo_inputs gets.
PLAN = demo.plan_demo(SECONDS, RATE, seed=0)
ARPABET_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return demo.make_demo_inputs(tmp_path_factory.mktemp("demo"), seconds=SECONDS, rate=RATE, seed=0)


def _phrase_agreement(samples: np.ndarray, speech: demo.SynthesisedSpeech) -> float:
    """Share of silero's 32 ms windows whose speech/no-speech call matches the score's phrases."""
    activity = detect_voice(samples)
    centres = (np.arange(activity.probabilities.shape[0]) + 0.5) * activity.window_s
    truth = np.zeros(centres.shape[0], bool)
    for start, end in speech.score.phrases:
        truth |= (centres >= start) & (centres < end)
    return float(np.mean((activity.probabilities > 0.5) == truth))


@pytest.mark.slow
def test_files_have_the_expected_shape(inputs):
    info = media.probe(inputs.video)
    assert info.video.frame_count == FRAMES
    assert info.video.rate == RATE
    assert (info.video.width, info.video.height) == (demo.FRAME_SIZE, demo.FRAME_SIZE)
    assert info.video.start_timecode == "01:00:00:00"
    assert len(info.audio) == 1 and info.audio[0].channels == 1
    assert info.audio[0].duration_seconds == pytest.approx(SECONDS, abs=0.02)

    first, end = range_to_frames(inputs.span, RATE)
    assert 0 < first < end < FRAMES  # a span that starts mid-clip
    assert (first, end) == (PLAN.span_first, PLAN.span_end)
    dub = media.probe(inputs.dub)
    assert dub.video is None
    assert dub.audio[0].duration_seconds == pytest.approx((end - first) / 25, abs=0.01)
    assert inputs.video.name in inputs.notes and inputs.dub.name in inputs.notes


@pytest.mark.slow
def test_face_on_every_sampled_frame_and_mouth_follows_the_syllables(inputs):
    frames = [f.image for f in media.read_span(inputs.video, frames_to_range(0, FRAMES, RATE)) if f.index % 5 == 0]
    assert len(frames) == FRAMES // 5
    apertures = []
    for position, image in enumerate(frames):
        faces = detect_frame(image)
        assert faces, f"no face on frame {position * 5}"
        apertures.append(lm.inner_lip_aperture(faces[0].landmarks))
    apertures = np.array(apertures)
    openness = PLAN.source_openness[::5]
    assert apertures.max() - apertures.min() > 0.12  # opens by more than a tenth of the eye distance
    assert np.corrcoef(apertures, openness)[0, 1] >= 0.5


@pytest.mark.slow
def test_the_clip_moves_outside_the_mouth_too(inputs):
    frames = [f.image.astype(np.float32) for f in media.read_span(inputs.video, frames_to_range(0, 2, RATE))]
    # Forehead and background: head sway and grain change them from frame to frame, a little.
    change = np.abs(frames[1][:120] - frames[0][:120]).mean()
    assert 0.5 < change < 12.0


@pytest.mark.slow
def test_speech_analysis_hears_the_dub_and_the_clip(inputs):
    dub = media.read_audio(inputs.dub, None, 16000, True).samples
    np.testing.assert_allclose(dub, PLAN.dub.samples, atol=2e-4)  # the file holds the planned score
    assert _phrase_agreement(dub, PLAN.dub) >= 0.7

    source = media.read_audio(inputs.video, None, 16000, True).samples
    speech = PLAN.source
    np.testing.assert_allclose(source, speech.samples, atol=2e-4)
    assert _phrase_agreement(source, speech) >= 0.7
    phones = decode_phones(source)
    heard = [
        any(p.phone in ARPABET_VOWELS and p.start_s <= (s.vowel_start_s + s.end_s) / 2 < p.end_s for p in phones)
        for s in speech.score.syllables
    ]
    assert np.mean(heard) >= 0.7


def test_dub_rhythm_differs_from_the_clip():
    assert PLAN.dub_source_correlation <= 0.3
    span_openness = PLAN.source_openness[PLAN.span_first : PLAN.span_end]
    assert np.corrcoef(span_openness, PLAN.dub_openness)[0, 1] <= 0.3
    assert PLAN.dub.score.syllables != PLAN.source.score.syllables
    # Deterministic: the same arguments give the same tracks.
    np.testing.assert_array_equal(demo.plan_demo(SECONDS, RATE, seed=0).dub.samples, PLAN.dub.samples)


def test_score_leaves_pauses_between_phrases():
    speech = demo.synthesise_speech(6.0, seed=4)
    phrases = speech.score.phrases
    assert len(phrases) >= 2
    for (_, end), (start, _) in zip(phrases, phrases[1:]):
        assert start - end >= 0.25
        pause = speech.samples[int(end * 16000) + 800 : int(start * 16000) - 800]
        assert np.sqrt(np.mean(pause**2)) < 0.01  # only the room-noise floor
        assert speech.openness_at(np.array([(end + start) / 2]))[0] < 0.05


def test_too_short_a_demo_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="too short"):
        demo.make_demo_inputs(tmp_path, seconds=1.0)
