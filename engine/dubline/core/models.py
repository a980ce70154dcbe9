"""Where third-party weights live, and the process-wide registry that keeps loaded models resident.

Weights are never downloaded: the user puts them in a model directory, found in this order:
``$DUBLINE_MODELS``; ``models_dir`` in ``$XDG_CONFIG_HOME/dubline/config.toml`` (default
``~/.config/dubline/config.toml``); ``$XDG_DATA_HOME/dubline/models`` (default
``~/.local/share/dubline/models``).

``ModelRegistry`` holds loaded models keyed by (name, device, dtype). Each key loads at most once:
concurrent callers of the same key wait for the one loader, callers of other keys proceed. Past a
memory budget the least recently used models are dropped (callers still holding a reference keep
theirs alive; the registry just stops pinning it).
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from dubline.core.errors import InvalidInputError, ModelNotFoundError
from dubline.core.lru import LruStore

log = logging.getLogger(__name__)

MODELS_ENV = "DUBLINE_MODELS"
BUDGET_ENV = "DUBLINE_MODEL_BUDGET_MB"
CONFIG_KEY = "models_dir"
DEFAULT_BUDGET_BYTES = 4 * 1024**3


def config_path() -> Path:
    """The user config file (it may not exist)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dubline" / "config.toml"


def _config_models_dir() -> Path | None:
    path = config_path()
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(f"config file {path} is not valid TOML: {error}") from error
    value = config.get(CONFIG_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"config file {path}: '{CONFIG_KEY}' must be a non-empty path string")
    return Path(value).expanduser()


def model_dir() -> Path:
    """The directory the user keeps third-party weights in (it may not exist yet)."""
    from_env = os.environ.get(MODELS_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    from_config = _config_models_dir()
    if from_config is not None:
        return from_config
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dubline" / "models"


def require_weight(filename: str, purpose: str) -> Path:
    """The path of ``filename`` in the model directory; ModelNotFoundError naming it when absent."""
    directory = model_dir()
    path = directory / filename
    if not path.is_file():
        raise ModelNotFoundError(
            f"{purpose} needs the weights file {path}, which does not exist. Put {filename} in "
            f"{directory}, or point ${MODELS_ENV} (or '{CONFIG_KEY}' in {config_path()}) at the "
            f"directory that holds it. dubline never downloads weights."
        )
    return path


class ModelKey(NamedTuple):
    """What identifies one resident model; a plain (name, device, dtype) tuple works too."""

    name: str
    device: str
    dtype: str


@dataclass(frozen=True)
class ModelInfo:
    """One resident model, as reported by ``ModelRegistry.loaded()``."""

    name: str
    device: str
    dtype: str
    bytes: int
    load_seconds: float
    last_used: float  # wall-clock time.time() of the last get()


def _normalise_key(key: ModelKey | tuple[Any, Any, Any]) -> ModelKey:
    # str() so torch.device("cpu") / "cpu" and torch.float32 / "torch.float32" name the same model.
    name, device, dtype = key
    dtype_name = str(dtype).removeprefix("torch.")
    return ModelKey(str(name), str(device), dtype_name)


def estimate_bytes(model: Any) -> int:
    """Bytes held by a torch module's parameters and buffers, or an array's ``nbytes``; else 0."""
    if hasattr(model, "parameters") and hasattr(model, "buffers"):
        tensors = [*model.parameters(), *model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))
    nbytes = getattr(model, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int) else 0


class ModelRegistry:
    """Loaded models keyed by (name, device, dtype), loaded once each, evicted LRU past a budget."""

    def __init__(self, budget_bytes: int | None = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes is not None and budget_bytes <= 0:
            raise InvalidInputError(f"model budget must be positive bytes, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._store: LruStore[ModelKey, Any] = LruStore(budget_bytes, size=estimate_bytes)

    def get(
        self,
        key: ModelKey | tuple[Any, Any, Any],
        loader: Callable[[], Any],
        size_bytes: int | None = None,
    ) -> Any:
        """The model for ``key``, calling ``loader()`` only if it is not resident."""
        key = _normalise_key(key)
        loaded = []

        def load() -> Any:
            loaded.append(True)
            return loader()

        model, evicted = self._store.get_or_load(key, load, size_bytes)
        if loaded:
            entry = dict(self._store.entries())[key]
            log.info(
                "loaded model %s on %s (%s): %.1f MB in %.2f s",
                key.name, key.device, key.dtype, entry.size / 1e6, entry.load_seconds,
            )
        for old in evicted:
            log.info("evicted model %s on %s (%s) to stay within the budget", *old)
        return model

    def evict(self, key: ModelKey | tuple[Any, Any, Any]) -> bool:
        """Drop ``key`` if resident; True when something was dropped."""
        return self._store.evict(_normalise_key(key))

    def loaded(self) -> list[ModelInfo]:
        """Resident models, least recently used first."""
        return [
            ModelInfo(k.name, k.device, k.dtype, e.size, e.load_seconds, e.last_used)
            for k, e in self._store.entries()
        ]

    def total_bytes(self) -> int:
        return self._store.total()


_default_registry: ModelRegistry | None = None
_default_registry_lock = threading.Lock()


def _budget_from_env() -> int | None:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_BYTES
    try:
        megabytes = float(raw)
    except ValueError as error:
        raise InvalidInputError(f"${BUDGET_ENV} must be a number of megabytes, got {raw!r}") from error
    if megabytes <= 0:
        raise InvalidInputError(f"${BUDGET_ENV} must be positive, got {raw!r}")
    return int(megabytes * 1024**2)


def registry() -> ModelRegistry:
    """The process-wide registry (budget from $DUBLINE_MODEL_BUDGET_MB, default 4 GiB)."""
    global _default_registry
    with _default_registry_lock:
        if _default_registry is None:
            _default_registry = ModelRegistry(_budget_from_env())
        return _default_registry
