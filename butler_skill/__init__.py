"""Butler: the CFO skill for AI agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from butler_skill.facade import Butler

__all__ = ["Butler", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily: `butler call` should not pay for the facade at start-up.
    if name == "Butler":
        from butler_skill.facade import Butler

        return Butler
    raise AttributeError(name)
