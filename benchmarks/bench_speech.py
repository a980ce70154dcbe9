"""Speech analysis speed: seconds of audio analysed per second of wall time, cold and cached.

Cold runs analyse from scratch (models already loaded: their one-off load time is printed apart);
warm runs are served from the on-disk cache (a temporary directory). Audio: the dubs in
../shared/media, read through the media layer at 16 kHz mono, analysed at 25 fps over their
whole length.

Usage: python benchmarks/bench_speech.py [media_dir]
"""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from dubline.stages import media
from dubline.stages.speech import analyse_speech
from dubline.stages.speech.vad import silero_model

RATE = Fraction(25)
REPEATS = 3


def main() -> None:
    media_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "media"
    started = time.perf_counter()
    silero_model()
    print(f"silero-vad load: {time.perf_counter() - started:.3f} s")
    print("| audio | seconds | cold s | cold x realtime | warm s | warm x realtime | warm speed-up |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("dub_en_16k.wav", "dub_en_48k_stereo.wav", "dub_ja_24bit.wav"):
            audio = media.read_audio(media_dir / name, None, rate=16000, mono=True)
            seconds = audio.samples.shape[0] / audio.sample_rate
            frames = int(seconds * RATE)
            cold = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                analyse_speech(audio, rate=RATE, frame_count=frames)
                cold.append(time.perf_counter() - t0)
            analyse_speech(audio, rate=RATE, frame_count=frames, cache=Path(scratch))  # fill the cache
            warm = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                analyse_speech(audio, rate=RATE, frame_count=frames, cache=Path(scratch))
                warm.append(time.perf_counter() - t0)
            c, w = min(cold), min(warm)
            print(f"| {name} | {seconds:.2f} | {c:.3f} | {seconds / c:.1f} | {w:.4f} | {seconds / w:.0f} | {c / w:.0f}x |")


if __name__ == "__main__":
    main()
