"""Wav2Lip generator, expert discriminator, checkpoint loading and the batched runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from dubline.core.errors import CancelledError, InvalidInputError, ModelNotFoundError
from dubline.core.models import ModelRegistry
from dubline.core.progress import CancelToken
from dubline.stages.backends.wav2lip.checkpoint import (
    deterministic_generator,
    deterministic_state_dict,
    deterministic_syncnet,
    load_generator,
    load_syncnet,
    resident_generator,
)
from dubline.stages.backends.wav2lip.infer import Wav2LipRunner, generator_input
from dubline.stages.backends.wav2lip.model import Wav2Lip
from dubline.stages.backends.wav2lip.syncnet import (
    SyncNetColor,
    measures_from_embeddings,
    sync_measures,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _manifest(conformance: Path, name: str) -> dict:
    return json.loads((conformance / "wav2lip" / name).read_text())


def _layout(manifest: dict) -> list[tuple[str, list[int]]]:
    return [(key, shape) for key, shape in manifest["state_dict"]]


def _save_official(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The official container: DataParallel-prefixed keys plus training state beside them."""
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}, "global_step": 1, "global_epoch": 1},
        path,
    )
    return path


@pytest.fixture(scope="module")
def generator() -> Wav2Lip:
    torch.manual_seed(0)
    return deterministic_generator()


@pytest.mark.parametrize(
    ("model_class", "manifest_name"),
    [(Wav2Lip, "wav2lip_state_dict.json"), (SyncNetColor, "syncnet_color_state_dict.json")],
)
def test_layout_matches_manifest_in_order(conformance, model_class, manifest_name):
    manifest = _manifest(conformance, manifest_name)
    model = model_class()
    ours = [(key, list(tensor.shape)) for key, tensor in model.state_dict().items()]
    assert ours == _layout(manifest)
    assert sum(p.numel() for p in model.parameters()) == manifest["param_count"]


@pytest.mark.slow
def test_strict_load_of_official_layout(conformance, tmp_path):
    state = deterministic_state_dict(_layout(_manifest(conformance, "wav2lip_state_dict.json")), seed=3)
    path = _save_official(tmp_path / "wav2lip.pth", state)
    model = load_generator(path)
    assert not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.slow
def test_wrong_shape_missing_key_and_wrong_model_are_named(conformance, tmp_path):
    state = deterministic_state_dict(_layout(_manifest(conformance, "wav2lip_state_dict.json")))
    state["output_block.1.weight"] = torch.zeros(3, 16, 1, 1)
    path = _save_official(tmp_path / "bad_shape.pth", state)
    with pytest.raises(InvalidInputError, match=r"bad_shape\.pth.*output_block\.1\.weight: file \(3, 16, 1, 1\)"):
        load_generator(path)

    del state["output_block.1.weight"]
    path = _save_official(tmp_path / "missing.pth", state)
    with pytest.raises(InvalidInputError, match=r"missing\.pth.*1 missing keys"):
        load_generator(path)

    syncnet_state = deterministic_state_dict(_layout(_manifest(conformance, "syncnet_color_state_dict.json")))
    path = _save_official(tmp_path / "lipsync_expert.pth", syncnet_state)
    with pytest.raises(InvalidInputError, match="looks like the expert discriminator"):
        load_generator(path)
    assert isinstance(load_syncnet(path), SyncNetColor)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nothere.pth"):
        load_generator(tmp_path / "nothere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InvalidInputError, match="garbage.pth"):
        load_generator(garbage)


@pytest.mark.slow
def test_pickled_extras_need_explicit_trust(conformance, tmp_path):
    import argparse

    state = deterministic_state_dict(_layout(_manifest(conformance, "syncnet_color_state_dict.json")))
    path = tmp_path / "resaved.pth"
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(InvalidInputError, match=r"resaved\.pth.*trust_pickle=True"):
        load_syncnet(path)
    assert isinstance(load_syncnet(path, trust_pickle=True), SyncNetColor)


@pytest.mark.slow
def test_golden_forward_with_deterministic_weights(conformance):
    kit = conformance / "wav2lip"
    model = Wav2Lip()
    model.load_state_dict(deterministic_state_dict(_layout(_manifest(conformance, "wav2lip_state_dict.json"))))
    model.eval()
    case = np.load(kit / "forward_case.npz")
    with torch.inference_mode():
        output = model(torch.from_numpy(case["audio_sequences"]), torch.from_numpy(case["face_sequences"])).numpy()
    diff = float(np.abs(output - case["output"]).max())
    print(f"golden forward max abs diff: {diff:.3g}")
    assert output.shape == (4, 3, 96, 96)
    assert diff <= 1e-4
    # The self-walking helper gives the same weights (our key order is the official order).
    with torch.inference_mode():
        again = deterministic_generator()(torch.from_numpy(case["audio_sequences"]), torch.from_numpy(case["face_sequences"]))
    assert float(np.abs(again.numpy() - output).max()) == 0.0


@pytest.mark.slow
def test_syncnet_strict_load_and_unit_embeddings(conformance, tmp_path):
    state = deterministic_state_dict(_layout(_manifest(conformance, "syncnet_color_state_dict.json")), seed=1)
    model = load_syncnet(_save_official(tmp_path / "lipsync_expert.pth", state))
    with torch.inference_mode():
        audio, face = model(torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96))
    assert audio.shape == face.shape == (2, 512)
    np.testing.assert_allclose(audio.norm(dim=1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(face.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_measures_find_a_known_offset():
    rng = np.random.default_rng(0)
    face = rng.normal(size=(40, 512))
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    audio = np.roll(face, 3, axis=0)  # audio window t+3 matches face window t
    measures = measures_from_embeddings(audio, face, max_offset=10)
    assert measures.best_offset == 3
    assert measures.lse_distance < 1e-6
    assert measures.lse_confidence > 1.0  # unrelated unit vectors in 512-d sit ~sqrt(2) apart
    assert measures.offsets == list(range(-10, 11)) and len(measures.mean_distances) == 21


@pytest.mark.slow
def test_sync_measures_run_on_crops():
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, size=(9, 96, 96, 3), dtype=np.uint8)
    windows = rng.uniform(-4, 4, size=(9, 1, 80, 16)).astype(np.float32)
    measures = sync_measures(deterministic_syncnet(), crops, windows, max_offset=15, batch_size=2)
    assert measures.offsets == list(range(-4, 5))  # 5 windows: offsets clamp to +-4
    assert np.isfinite(measures.lse_distance) and 0 <= measures.lse_distance <= 2
    assert measures.lse_confidence >= 0 and -1 <= measures.mean_cosine <= 1
    with pytest.raises(InvalidInputError):
        sync_measures(deterministic_syncnet(), crops[:4], windows[:4])


def _inputs(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, size=(count, 96, 96, 3), dtype=np.uint8)
    references = rng.integers(0, 256, size=(count, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, size=(count, 1, 80, 16)).astype(np.float32)
    return faces, references, mels


def test_generator_input_masks_lower_half_and_uses_bgr():
    face = np.zeros((1, 96, 96, 3), dtype=np.uint8)
    face[..., 0] = 255  # pure red in RGB
    reference = np.zeros((1, 96, 96, 3), dtype=np.uint8)
    reference[..., 2] = 51  # blue in RGB
    six = generator_input(face, reference)
    assert six.shape == (1, 6, 96, 96) and six.dtype == np.float32
    assert np.all(six[0, 2, :48] == 1.0) and np.all(six[0, 2, 48:] == 0.0)  # red is channel 2 in BGR
    assert np.all(six[0, :2] == 0.0)
    np.testing.assert_allclose(six[0, 3], 0.2)  # blue is channel 0 of the BGR reference
    assert np.all(six[0, 4:] == 0.0)


class _EchoReference(torch.nn.Module):
    """Returns the reference half of the input: shows the runner's BGR<->RGB flips cancel out."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        return faces[:, 3:6] + self.anchor


def test_runner_round_trips_rgb():
    faces, references, mels = _inputs(5)
    output = Wav2LipRunner(_EchoReference(), batch_size=2).run(faces, references, mels)
    np.testing.assert_array_equal(output, references)


@pytest.mark.slow
def test_runner_shape_batching_progress_and_cancel(generator):
    faces, references, mels = _inputs(4)
    events = []
    runner = Wav2LipRunner(generator, device="cpu", batch_size=1, fp16=True)
    assert runner.dtype == torch.float32  # fp16 only applies on CUDA
    single = runner.run(faces, references, mels, progress=lambda s, d, t: events.append((s, d, t)))
    assert single.shape == (4, 96, 96, 3) and single.dtype == np.uint8
    assert events == [("wav2lip", 0, 4), ("wav2lip", 1, 4), ("wav2lip", 2, 4), ("wav2lip", 3, 4), ("wav2lip", 4, 4)]
    batched = Wav2LipRunner(generator, batch_size=4).run(faces, references, mels)
    diff = np.abs(single.astype(int) - batched.astype(int))
    assert diff.max() <= 1 and np.mean(diff == 0) > 0.999  # float reassociation may flip a rounding
    # The deterministic generator's output depends on the audio (the plumbing is connected).
    other_audio = Wav2LipRunner(generator, batch_size=4).run(faces, references, -mels)
    assert np.abs(other_audio.astype(int) - batched.astype(int)).max() > 0

    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        runner.run(faces, references, mels, cancel=token)


def test_runner_rejects_mismatched_inputs(generator):
    faces, references, mels = _inputs(3)
    runner = Wav2LipRunner(generator, batch_size=2)
    with pytest.raises(InvalidInputError, match="one per frame"):
        runner.run(faces, references[:2], mels)
    with pytest.raises(InvalidInputError, match="uint8"):
        runner.run(faces.astype(np.float32), references, mels)
    with pytest.raises(InvalidInputError, match="mel_windows"):
        runner.run(faces, references, mels[:, :, :, :8])
    with pytest.raises(InvalidInputError):
        Wav2LipRunner(generator, batch_size=0)


@pytest.mark.slow
def test_resident_generator_loads_once_from_model_dir(conformance, tmp_path, monkeypatch):
    monkeypatch.setenv("DUBLINE_MODELS", str(tmp_path))
    models = ModelRegistry(budget_bytes=None)
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "wav2lip_gan.pth")):
        resident_generator(models=models)
    state = deterministic_state_dict(_layout(_manifest(conformance, "wav2lip_state_dict.json")))
    _save_official(tmp_path / "wav2lip.pth", state)
    first = resident_generator(models=models)  # falls back to wav2lip.pth
    assert resident_generator(models=models) is first
    [info] = models.loaded()
    assert info.name == "wav2lip:wav2lip.pth" and info.bytes > 36_298_035 * 4


@pytest.mark.gpu
@requires_cuda
def test_cuda_fp16_matches_cpu():
    faces, references, mels = _inputs(8)
    cpu = Wav2LipRunner(deterministic_generator(), batch_size=8).run(faces, references, mels)
    gpu = Wav2LipRunner(deterministic_generator(), device="cuda", batch_size=8, fp16=True).run(faces, references, mels)
    diff = np.abs(cpu.astype(int) - gpu.astype(int))
    print(f"cuda fp16 vs cpu fp32: max {diff.max()}, mean {diff.mean():.3f} (uint8 levels)")
    assert diff.mean() < 1.0 and diff.max() <= 8


def _real_weights() -> Path:
    path = Path(os.environ.get("DUBLINE_MODELS", "")) / "wav2lip.pth"
    if not os.environ.get("DUBLINE_MODELS") or not path.is_file():
        pytest.skip("$DUBLINE_MODELS has no wav2lip.pth")
    return path


@pytest.mark.weights
def test_official_weights_load_strictly_and_run():
    model = load_generator(_real_weights())
    faces, references, mels = _inputs(2)
    output = Wav2LipRunner(model, batch_size=2).run(faces, references, mels)
    assert output.shape == (2, 96, 96, 3)
