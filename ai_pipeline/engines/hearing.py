"""Whether the STT was sure of what the caller said this turn, for the dialogue engine to see.

The transcript reaches the offline router as plain text in the LLM context, which has no room
for the STT's confidence. One :class:`CallerHearing` per call is shared by the STT service (it
notes each transcript) and the router (it takes the verdict once per turn), so the router can
tell "I heard you, and I don't know that" from "I didn't catch that".
"""

from __future__ import annotations


class CallerHearing:
    """Per call: was any transcript since the router last answered unsure?"""

    def __init__(self) -> None:
        self._unsure = False

    def heard(self, *, confident: bool) -> None:
        if not confident:
            self._unsure = True

    def take_unsure(self) -> bool:
        """Whether this turn held unsure words; the next turn starts sure again."""
        unsure, self._unsure = self._unsure, False
        return unsure
