"""Measurements behind docs/SPEECH.md: what the phone decoder finds, and whether it is useful.

For each dub in ../shared/media (and the speaker clips' own audio):
- phone counts; share of vowel and bilabial-closure phones (by count and by time);
- agreement of the decoder's speech/silence with silero-vad's, on 10 ms frames;
- language-transfer proxies on 10 ms frames of VAD speech: Pearson r of the phonetic openness
  track with (a) log energy and (b) an F1 proxy (spectral centroid of 300-1000 Hz), each against a
  chance level (the same track circularly shifted by 1-3 s, mean of 20 shifts);
- closure/energy alignment: energy at each P/B/M centre relative to the maximum within +-100 ms
  ("dip", dB), against the same figure at vowel centres and at random speech times.
For the speaker clips also the PAC sync (DESIGN.md) of the measured inner-lip aperture with the
openness track of their own audio vs. someone else's audio, and the speaker calibration.

Usage: python benchmarks/measure_speech.py [media_dir]   (takes about a minute: face tracking)
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from dubline.qc.metrics import pac_sync
from dubline.stages import media
from dubline.stages.speech import analyse_speech, calibrate_speaker, openness_track
from dubline.stages.speech.phones import decode_phones
from dubline.stages.speech.vad import detect_voice
from dubline.stages.speech.visemes import is_closure, is_vowel

SR = 16000
HOP = 160  # 10 ms
WIN = 400  # 25 ms
RNG = np.random.default_rng(0)


def frame_features(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log energy dB, F1-proxy Hz) per 10 ms frame, frame i centred at (i + 0.5) * 10 ms."""
    n = samples.shape[0] // HOP
    padded = np.pad(samples, (WIN // 2, WIN))
    window = np.hanning(WIN)
    freqs = np.fft.rfftfreq(WIN, 1 / SR)
    band = (freqs >= 300) & (freqs <= 1000)
    energy = np.empty(n)
    centroid = np.empty(n)
    for i in range(n):
        chunk = padded[i * HOP + HOP // 2 : i * HOP + HOP // 2 + WIN] * window
        energy[i] = 10 * np.log10(np.mean(chunk**2) + 1e-10)
        spectrum = np.abs(np.fft.rfft(chunk))[band]
        centroid[i] = np.sum(freqs[band] * spectrum) / (np.sum(spectrum) + 1e-12)
    return energy, centroid


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def shifted_chance(track: np.ndarray, other: np.ndarray, mask: np.ndarray) -> float:
    rs = []
    for _ in range(20):
        shift = int(RNG.integers(100, 300))
        rs.append(pearson(np.roll(track, shift)[mask], other[mask]))
    return float(np.mean(rs))


def analyse_audio(name: str, samples: np.ndarray) -> dict:
    duration = samples.shape[0] / SR
    phones = decode_phones(samples)
    voice = detect_voice(samples)
    n = samples.shape[0] // HOP
    centres = (np.arange(n) + 0.5) * HOP / SR
    vad = np.zeros(n, bool)
    for s, e in voice.segments:
        vad |= (centres >= s) & (centres < e)
    decoded_speech = np.zeros(n, bool)
    for p in phones:
        if p.phone not in ("SIL", "+NSN+"):
            decoded_speech |= (centres >= p.start_s) & (centres < p.end_s)
    speech_phones = [p for p in phones if p.phone not in ("SIL", "+NSN+", "+SPN+")]
    vowel_phones = [p for p in speech_phones if is_vowel(p.phone)]
    closure_phones = [p for p in speech_phones if is_closure(p.phone)]

    def seconds(items):
        return sum(p.end_s - p.start_s for p in items)

    openness = openness_track(phones, rate=Fraction(100), frame_count=n)
    energy, centroid = frame_features(samples)
    loud = energy > energy.max() - 40
    mask_e = vad
    mask_f = vad & loud
    result = {
        "name": name,
        "duration_s": duration,
        "phones": len(phones),
        "speech_phones": len(speech_phones),
        "phones_per_speech_s": len(speech_phones) / max(vad.sum() / 100, 1e-9),
        "vowel_share_count": len(vowel_phones) / max(len(speech_phones), 1),
        "vowel_share_time": seconds(vowel_phones) / max(seconds(speech_phones), 1e-9),
        "closure_share_count": len(closure_phones) / max(len(speech_phones), 1),
        "closure_share_time": seconds(closure_phones) / max(seconds(speech_phones), 1e-9),
        "vad_speech_s": float(vad.sum() / 100),
        "agreement": float(np.mean(vad == decoded_speech)),
        "vad_speech_decoded_as_speech": float(decoded_speech[vad].mean()) if vad.any() else float("nan"),
        "vad_silence_decoded_as_silence": float((~decoded_speech[~vad]).mean()) if (~vad).any() else float("nan"),
        "r_energy": pearson(openness[mask_e], energy[mask_e]),
        "r_energy_chance": shifted_chance(openness, energy, mask_e),
        "r_f1": pearson(openness[mask_f], centroid[mask_f]),
        "r_f1_chance": shifted_chance(openness, centroid, mask_f),
    }

    def dip(t: float) -> float:
        i = min(int(t * 100), n - 1)
        lo, hi = max(0, i - 10), min(n, i + 11)
        return float(energy[i] - energy[lo:hi].max())

    in_speech = lambda p: vad[min(int((p.start_s + p.end_s) * 50), n - 1)]  # noqa: E731
    closure_dips = [dip((p.start_s + p.end_s) / 2) for p in closure_phones if in_speech(p)]
    vowel_dips = [dip((p.start_s + p.end_s) / 2) for p in vowel_phones if in_speech(p)]
    speech_times = centres[vad]
    random_dips = [dip(t) for t in RNG.choice(speech_times, size=min(200, speech_times.size), replace=False)]
    result.update(
        closures_in_speech=len(closure_dips),
        closure_dip_db=float(np.median(closure_dips)) if closure_dips else float("nan"),
        vowel_dip_db=float(np.median(vowel_dips)) if vowel_dips else float("nan"),
        random_dip_db=float(np.median(random_dips)) if random_dips else float("nan"),
        closure_at_dip_6db=float(np.mean(np.array(closure_dips) <= -6)) if closure_dips else float("nan"),
        random_at_dip_6db=float(np.mean(np.array(random_dips) <= -6)) if random_dips else float("nan"),
    )
    return result


def print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k != "name"]
    print("| measure | " + " | ".join(r["name"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in keys:
        cells = []
        for r in rows:
            v = r[key]
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        print(f"| {key} | " + " | ".join(cells) + " |")


def speaker_measures(media_dir: Path, others: dict[str, np.ndarray], cache_root: Path) -> None:
    from dubline.core.cache import FrameCache
    from dubline.core.timing import frames_to_range
    from dubline.stages.faces import FaceTrackParams, track_faces
    from dubline.stages.media import media_fingerprint

    print("\n| clip | frames | faces usable | PAC own audio (r, lag) | PAC other audio (r) | calibration aperture 0->1 | width 0->1 | calib lag, r |")
    print("|---|---|---|---|---|---|---|---|")
    for clip in ("speaker_a.mp4", "speaker_b.mp4"):
        path = media_dir / clip
        info = media.probe(path)
        video = info.video
        whole = frames_to_range(0, video.frame_count, video.rate)
        own = media.read_audio(path, whole, rate=SR, mono=True)
        speech = analyse_speech(own, rate=video.rate, frame_count=video.frame_count)
        params = FaceTrackParams()
        faces = track_faces(
            media.read_span(path, whole),
            frame_count=video.frame_count,
            speech_activity=speech.voice_activity,
            params=params,
            cache=FrameCache("faces", media_fingerprint(path), params.detection_key(), root=cache_root),
        )
        own_open = openness_track(speech.phones, rate=video.rate, frame_count=video.frame_count)
        r_own, lag_own = pac_sync(faces.aperture, own_open)
        other_rs = []
        for other_name, samples in others.items():
            if other_name == clip:
                continue
            other_speech = analyse_speech(
                media.AudioClip(samples, SR), rate=video.rate, frame_count=video.frame_count
            )
            other_open = openness_track(other_speech.phones, rate=video.rate, frame_count=video.frame_count)
            other_rs.append(pac_sync(faces.aperture, other_open)[0])
        calibration = calibrate_speaker(faces.aperture, faces.mouth_width, speech)
        print(
            f"| {clip} | {video.frame_count} | {np.isfinite(faces.aperture).mean():.0%} | "
            f"{r_own:.2f}, {lag_own:+d} | {np.mean(other_rs):.2f} (mean of {len(other_rs)}) | "
            f"{calibration.aperture.at_zero:.3f} -> {calibration.aperture.at_one:.3f} | "
            f"{calibration.width.at_zero:.3f} -> {calibration.width.at_one:.3f} | "
            f"{calibration.lag_frames:+d}, {calibration.correlation:.2f} |"
            + (f" fallback: {calibration.fallback_reason}" if calibration.fallback_reason else "")
        )


def main() -> None:
    media_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "media"
    audio = {}
    for name in ("dub_en_16k.wav", "dub_en_48k_stereo.wav", "dub_ja_24bit.wav", "speaker_a.mp4", "speaker_b.mp4"):
        audio[name] = media.read_audio(media_dir / name, None, rate=SR, mono=True).samples
    print_table([analyse_audio(name, samples) for name, samples in audio.items()])
    with tempfile.TemporaryDirectory() as scratch:
        speaker_measures(media_dir, audio, Path(scratch))


if __name__ == "__main__":
    main()
