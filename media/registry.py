"""Live calls by id, for the control plane (hang up, list) and for metrics."""

from __future__ import annotations

from collections.abc import Iterator

from media.hooks import CallHandle


class CallRegistry:
    def __init__(self) -> None:
        self._calls: dict[str, CallHandle] = {}

    def add(self, call: CallHandle) -> None:
        if call.call_id in self._calls:
            raise KeyError(f"call {call.call_id} already registered")
        self._calls[call.call_id] = call

    def remove(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def get(self, call_id: str) -> CallHandle | None:
        return self._calls.get(call_id)

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[CallHandle]:
        return iter(list(self._calls.values()))
