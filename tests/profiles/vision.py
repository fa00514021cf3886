"""A host with a vision model: the defaults plus ``gemma3:4b``, whose capabilities include ``vision``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.standin import StandinState

VISION_MODEL = "gemma3:4b"


def apply(state: StandinState) -> None:
    from tests.standin import _model_record

    state.models[VISION_MODEL] = _model_record(VISION_MODEL, 3_338_801_804, "gemma3", "4.3B", "Q4_K_M",
                                               ["completion", "vision"], 131072)
