"""Loading the official Wav2Lip checkpoints, strictly, with messages that name the file.

The official files are ``torch.save({"state_dict": sd, "optimizer": ..., "global_step": ...,
"global_epoch": ...})`` with keys prefixed ``module.`` when trained under DataParallel. They contain
only tensors and plain containers, so ``torch.load(weights_only=True)`` reads them without running
any pickled code. ``trust_pickle=True`` falls back to a full unpickle for odd re-saves that
``weights_only`` refuses; that executes whatever code the file carries, so only use it on files
you trust.

Also here: the conformance kit's deterministic weights, so tests, benchmarks and end-to-end runs can
exercise the real architecture without the (non-commercial, never shipped) official weights.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.core.models import ModelRegistry, registry, require_weight
from dubline.stages.backends.wav2lip.model import Wav2Lip
from dubline.stages.backends.wav2lip.syncnet import SyncNetColor

#: Generator files in order of preference when the caller names none: the GAN-trained one gives
#: sharper mouths; plain ``wav2lip.pth`` syncs marginally better but is blurrier.
GENERATOR_FILES = ("wav2lip_gan.pth", "wav2lip.pth")
SYNCNET_FILE = "lipsync_expert.pth"

_ModelT = TypeVar("_ModelT", bound=nn.Module)


def _load_trusted(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise InvalidInputError(f"checkpoint {path} is not a readable torch file: {error!r}") from error


def read_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (official container or a bare state dict), ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch reports both "holds objects beyond tensors" and some plain corruption this way.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not trust_pickle:
            raise InvalidInputError(
                f"checkpoint {path} cannot be read safely as a torch checkpoint ({reason}); if it is "
                f"a checkpoint you trust, load it with trust_pickle=True (this runs code stored in the file)"
            ) from error
        content = _load_trusted(path)
    except Exception as error:  # a corrupt or foreign file fails in many ways inside torch.load
        raise InvalidInputError(f"checkpoint {path} is not a readable torch file: {error!r}") from error

    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidInputError(
            f"checkpoint {path} has neither a 'state_dict' of tensors nor is a state dict itself"
        )
    return {key.removeprefix("module."): tensor for key, tensor in state.items()}


def _check_layout(path: Path, model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raise one InvalidInputError listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (first: {'; '.join(mismatched[:3])})")
    hint = ""
    if what == "Wav2Lip generator" and "face_encoder.0.conv_block.0.weight" in state:
        hint = f" It looks like the expert discriminator ({SYNCNET_FILE}), not a generator."
    elif what != "Wav2Lip generator" and "face_encoder_blocks.0.0.conv_block.0.weight" in state:
        hint = f" It looks like a generator ({' / '.join(GENERATOR_FILES)}), not the discriminator."
    raise InvalidInputError(f"checkpoint {path} is not a {what} checkpoint: {'; '.join(problems)}.{hint}")


def _load(
    model: _ModelT, path: str | Path, what: str, device: str | torch.device, dtype: torch.dtype, trust_pickle: bool
) -> _ModelT:
    path = Path(path)
    state = read_state_dict(path, trust_pickle)
    _check_layout(path, model, state, what)
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def load_generator(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_pickle: bool = False,
) -> Wav2Lip:
    """An official ``wav2lip.pth`` / ``wav2lip_gan.pth`` as an eval-mode ``Wav2Lip`` on ``device``."""
    return _load(Wav2Lip(), path, "Wav2Lip generator", device, dtype, trust_pickle)


def load_syncnet(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_pickle: bool = False,
) -> SyncNetColor:
    """The official ``lipsync_expert.pth`` as an eval-mode ``SyncNetColor`` on ``device``."""
    return _load(SyncNetColor(), path, "Wav2Lip expert discriminator (SyncNet_color)", device, dtype, trust_pickle)


def generator_weights_path(filename: str | None = None) -> Path:
    """The generator file in the model directory: ``filename``, or the first of GENERATOR_FILES present."""
    if filename is not None:
        return require_weight(filename, "the wav2lip backend")
    for candidate in GENERATOR_FILES:
        try:
            return require_weight(candidate, "the wav2lip backend")
        except ModelNotFoundError:
            continue
    # Name the preferred file in the error; the message also says where the directory is.
    return require_weight(GENERATOR_FILES[0], f"the wav2lip backend (or {GENERATOR_FILES[1]} instead)")


def resident_generator(
    filename: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    models: ModelRegistry | None = None,
) -> Wav2Lip:
    """The generator from the user's model directory, loaded once per (file, device, dtype)."""
    path = generator_weights_path(filename)
    models = models or registry()
    key = (f"wav2lip:{path.name}", str(device), str(dtype))
    return models.get(key, lambda: load_generator(path, device, dtype))


def resident_syncnet(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    models: ModelRegistry | None = None,
) -> SyncNetColor:
    """The expert discriminator from the user's model directory, loaded once per (device, dtype)."""
    path = require_weight(SYNCNET_FILE, "the wav2lip sync measure")
    models = models or registry()
    key = (f"wav2lip:{SYNCNET_FILE}", str(device), str(dtype))
    return models.get(key, lambda: load_syncnet(path, device, dtype))


def deterministic_state_dict(
    layout: Iterable[tuple[str, Sequence[int]]], seed: int = 0
) -> dict[str, torch.Tensor]:
    """The conformance kit's deterministic weights for ``layout`` (keys and shapes, official order).

    One generator seeded with ``seed``, keys walked in order: running_var ~ U(0.5, 1.5),
    running_mean ~ U(-0.05, 0.05), num_batches_tracked = 0 (no draw), >1-D tensors ~ N(0, 1/fan_in),
    1-D tensors ~ N(0, 0.05^2) plus 1 for ``.weight`` (norm scales).
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in layout:
        shape = list(shape)
        if key.endswith("running_var"):
            tensor = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith("num_batches_tracked"):
            tensor = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_mean"):
            tensor = (torch.rand(shape, generator=generator) - 0.5) * 0.1
        elif len(shape) > 1:
            tensor = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        else:
            tensor = torch.randn(shape, generator=generator) * 0.05 + (1.0 if key.endswith(".weight") else 0.0)
        state[key] = tensor
    return state


def _deterministic(model: _ModelT, seed: int) -> _ModelT:
    # The model's own state_dict order is the official order (the conformance test checks it).
    layout = [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]
    model.load_state_dict(deterministic_state_dict(layout, seed), strict=True)
    return model.eval()


def deterministic_generator(seed: int = 0) -> Wav2Lip:
    """A CPU float32 ``Wav2Lip`` with the kit's deterministic weights: plumbing, not quality."""
    return _deterministic(Wav2Lip(), seed)


def deterministic_syncnet(seed: int = 0) -> SyncNetColor:
    """A CPU float32 ``SyncNetColor`` with deterministic weights (same recipe): plumbing only."""
    return _deterministic(SyncNetColor(), seed)
