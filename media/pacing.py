"""When the next outbound frame is due: the pacer's 20 ms grid, pure and clock-free.

The call's pacer (Trio) asks :meth:`PacingGrid.slot` for the frame at hand and sleeps until the
answer if it lies ahead. Three rules, each for a way real audio arrives:

- **Catch up after a delay.** A frame whose slot passed a little while ago (a stall anywhere on
  the way: the caller's side, the agent, this process) goes out at once, and so do the frames
  queued behind it whose slots also passed; the grid keeps its place. Re-anchoring the grid on
  the late frame instead would push every later frame back by the delay, for the rest of the
  call, because a live stream (an echo, real-time TTS) fills the buffer exactly as fast as it
  drains: latency would only ever grow, one stall at a time. A catch-up is a short burst, which
  is what network jitter looks like to the far end's jitter buffer anyway.
- **Restart after a gap.** More than ``catchup_s`` behind means the stream stopped (the agent
  was silent) or the delay was too long to replay as a burst: the grid starts again at the frame
  at hand.
- **Follow a live stream that runs early.** When the buffer ran dry and the next frame comes
  before its slot, the grid was anchored on a frame that was held up; each such frame pulls the
  grid earlier by at most ``slew_s``, so gaps stay close to 20 ms while the hold-up drains away.

``hold_s`` (0 by default: every frame goes the moment its slot allows) is a jitter allowance for
a live stream, which arrives frame by frame just in time (an echo, a remote agent streaming in
real time): a (re)started grid begins ``hold_s`` after the frame at hand, and an early frame
pulls it earlier only while it would still be more than ``hold_s`` ahead. The grid then settles
``hold_s`` behind the stream's earliest frames, so frames that come up to ``hold_s`` later than
those still leave exactly on their slots instead of passing their lateness on to the far end;
the price is up to ``hold_s`` more delay on every frame.
"""

from __future__ import annotations

import math


class PacingGrid:
    def __init__(
        self, frame_s: float, catchup_s: float, slew_s: float, hold_s: float = 0.0
    ) -> None:
        if not 0 < slew_s < frame_s <= catchup_s:
            raise ValueError("need 0 < slew_s < frame_s <= catchup_s")
        if not 0 <= hold_s < catchup_s:
            raise ValueError("need 0 <= hold_s < catchup_s")
        self.frame_s = frame_s
        self.catchup_s = catchup_s
        self.slew_s = slew_s
        self.hold_s = hold_s
        self.next_slot = -math.inf

    def slot(self, now: float, ran_dry: bool) -> float:
        """The time the frame at hand is due; ``<= now`` means send it at once."""
        if now > self.next_slot + self.catchup_s:
            self.next_slot = now + self.hold_s
        elif ran_dry and now < self.next_slot - self.hold_s:
            self.next_slot -= min(self.next_slot - self.hold_s - now, self.slew_s)
        return self.next_slot

    def advance(self) -> None:
        """The frame at hand went out (or its slot was given up): on to the next slot."""
        self.next_slot += self.frame_s
