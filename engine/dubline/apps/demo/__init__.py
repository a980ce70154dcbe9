"""``dubline demo``: a talking clip and a dub, made offline from public-domain material.

The face is scikit-image's astronaut photograph (``skimage.data.astronaut()``: NASA portrait of
Eileen Collins, public domain), which installs with scikit-image. It is animated into a short
talking clip: the 68 landmarks are found once with dlib's embedded models, and every frame the
jaw and lower lip are lowered to follow the openness of the clip's own synthesised speech (the
landmark warp of ``backends.retrieval.transfer``); where the lips part an inner mouth is painted
(the photo's own upper teeth, a dark red cavity, a hint of tongue), so a 68-point landmark
detector measures a real opening. Slow head drift, a tiny roll and sensor noise keep it from
looking like a frozen still.

The speech is our own formant synthesis (no TTS engine): a glottal pulse train with a falling,
accented F0 contour and jitter, through a cascade of time-varying formant resonators (Klatt's
resonator form) for the vowels a e i o u, with stop closures and bursts, fricative and nasal
consonants between the vowels and pauses between phrases. The openness of the mouth at each
instant is part of the same score, so the clip's mouth follows its own syllables. The dub uses
another seed and tempo, so its rhythm differs from the clip's.
"""

from dubline.apps.demo.portrait import FRAME_SIZE
from dubline.apps.demo.run import (
    DemoInputs,
    DemoPlan,
    DemoResult,
    make_demo_inputs,
    plan_demo,
    run_demo,
)
from dubline.apps.demo.speech import SynthesisedSpeech, synthesise_speech

__all__ = [
    "FRAME_SIZE", "DemoInputs", "DemoPlan", "DemoResult", "SynthesisedSpeech", "make_demo_inputs", "plan_demo",
    "run_demo", "synthesise_speech",
]
