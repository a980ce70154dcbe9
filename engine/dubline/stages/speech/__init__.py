"""The speech-track stage: what the dub audio says when, as per-frame mouth targets.

Importing this package is cheap (numpy only); pocketsphinx, torch and silero-vad load on first use.

    analyse_speech(audio, rate=..., frame_count=...) -> SpeechTrack     (analyse.py)
    openness_track(phones, rate=..., frame_count=...)  QC's phonetic openness track (targets.py)
    calibrate_speaker(aperture, width, clip_speech)    per-speaker target scale (calibration.py)
"""

from dubline.stages.speech.analyse import (
    LENGTH_POLICIES,
    SpeechParams,
    SpeechTrack,
    analyse_speech,
)
from dubline.stages.speech.calibration import (
    CalibrationParams,
    SpeakerCalibration,
    calibrate_speaker,
)
from dubline.stages.speech.phones import PhoneSegment
from dubline.stages.speech.targets import openness_track

__all__ = [
    "LENGTH_POLICIES",
    "CalibrationParams",
    "PhoneSegment",
    "SpeakerCalibration",
    "SpeechParams",
    "SpeechTrack",
    "analyse_speech",
    "calibrate_speaker",
    "openness_track",
]
