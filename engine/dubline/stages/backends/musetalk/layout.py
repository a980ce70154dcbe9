"""The MuseTalk 1.5 model directory: which files, where, and the check that names what is missing.

The layout is the official one (MuseTalk's ``models/`` directory), so a user can point
``$DUBLINE_MODELS`` (or the ``model_dir`` option) at an existing MuseTalk checkout's ``models/``::

    musetalkV15/unet.pth                      UNet state dict (torch.save of a flat dict)
    musetalkV15/musetalk.json                 UNet2DConditionModel config
    sd-vae/config.json                        AutoencoderKL config (stabilityai/sd-vae-ft-mse)
    sd-vae/diffusion_pytorch_model.bin        or diffusion_pytorch_model.safetensors
    whisper/config.json                       WhisperConfig (openai/whisper-tiny)
    whisper/preprocessor_config.json          WhisperFeatureExtractor settings
    whisper/pytorch_model.bin                 or model.safetensors

Nothing here imports torch: the check runs before any model or clip analysis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dubline.core.errors import InvalidInputError, ModelNotFoundError

UNET_WEIGHTS = "musetalkV15/unet.pth"
UNET_CONFIG = "musetalkV15/musetalk.json"
VAE_CONFIG = "sd-vae/config.json"
#: Either file works (same keys); safetensors first because reading it runs no pickle code.
VAE_WEIGHTS = ("sd-vae/diffusion_pytorch_model.safetensors", "sd-vae/diffusion_pytorch_model.bin")
WHISPER_CONFIG = "whisper/config.json"
WHISPER_PREPROCESSOR = "whisper/preprocessor_config.json"
WHISPER_WEIGHTS = ("whisper/model.safetensors", "whisper/pytorch_model.bin")

EXPECTED_LAYOUT = "\n".join(
    (
        "  musetalkV15/unet.pth and musetalkV15/musetalk.json   (TMElyralab/MuseTalk, v1.5)",
        "  sd-vae/config.json and sd-vae/diffusion_pytorch_model.bin (or .safetensors)   (stabilityai/sd-vae-ft-mse)",
        "  whisper/config.json, whisper/preprocessor_config.json and whisper/pytorch_model.bin"
        " (or model.safetensors)   (openai/whisper-tiny)",
    )
)


@dataclass(frozen=True)
class ModelFiles:
    """The files of one MuseTalk 1.5 model directory (all present when built by ``locate``)."""

    root: Path
    unet_weights: Path
    unet_config: Path
    vae_config: Path
    vae_weights: Path
    whisper_config: Path
    whisper_preprocessor: Path
    whisper_weights: Path


def _missing(root: Path, wanted: str, how_found: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"the musetalk backend needs {root / wanted}, which does not exist. The model directory "
        f"{root} ({how_found}) must hold MuseTalk 1.5's official layout:\n{EXPECTED_LAYOUT}\n"
        "dubline never downloads weights; see docs/MUSETALK.md."
    )


def locate(root: Path, how_found: str = "the model directory") -> ModelFiles:
    """The files under ``root``; ModelNotFoundError naming the first missing file and the layout."""
    root = Path(root).expanduser()

    def one(name: str) -> Path:
        path = root / name
        if not path.is_file():
            raise _missing(root, name, how_found)
        return path

    def first_of(names: tuple[str, ...]) -> Path:
        for name in names:
            if (root / name).is_file():
                return root / name
        raise _missing(root, f"{names[-1]} (or {Path(names[0]).name})", how_found)

    return ModelFiles(
        root=root,
        unet_weights=one(UNET_WEIGHTS),
        unet_config=one(UNET_CONFIG),
        vae_config=one(VAE_CONFIG),
        vae_weights=first_of(VAE_WEIGHTS),
        whisper_config=one(WHISPER_CONFIG),
        whisper_preprocessor=one(WHISPER_PREPROCESSOR),
        whisper_weights=first_of(WHISPER_WEIGHTS),
    )


def read_config(path: Path) -> dict[str, Any]:
    """A JSON config as a dict; InvalidInputError naming the file when it is not one."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"musetalk config {path} is not readable JSON: {error}") from error
    if not isinstance(config, dict):
        raise InvalidInputError(f"musetalk config {path} must be a JSON object, got {type(config).__name__}")
    return config
