from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_MEDIA = SHARED / "media"
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media beside the checkout; tests using it skip when it is absent."""
    if not (SHARED_MEDIA / "speaker_a.mp4").exists():
        pytest.skip("../shared/media is not present")
    return SHARED_MEDIA


@pytest.fixture(scope="session")
def conformance() -> Path:
    if not (CONFORMANCE / "wav2lip" / "wav2lip_state_dict.json").exists():
        pytest.skip("../shared/conformance is not present")
    return CONFORMANCE
