"""The stand-in's profiles: a named habit of a whole host, applied to a fresh ``StandinState``.

A profile sets the models a host has, how they answer (``state.responder``), their speeds and faults. Each
lives in its own module here and registers below; ``polite`` is the stand-in's own default behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.standin import StandinState

Profile = Callable[["StandinState"], None]


def _polite(state: StandinState) -> None:
    """The defaults: four small models that answer at once, exactly as asked."""


def _profiles() -> dict[str, Profile]:
    from tests.profiles import classifier, demo, small_models, vision

    return {
        "polite": _polite,
        "demo": demo.apply,
        "small_models": small_models.apply,
        "vision": vision.apply,
        "classifier": classifier.apply,
    }


def apply_profile(state: StandinState, name: str) -> None:
    profiles = _profiles()
    if name not in profiles:
        raise KeyError(f"no stand-in profile {name!r}; known: {', '.join(sorted(profiles))}")
    profiles[name](state)
