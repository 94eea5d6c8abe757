"""Sans-I/O RTP (RFC 3550), RTCP, RFC 4733 telephone-events and a jitter buffer.

Every module here is pure: bytes and times (in milliseconds, passed in) go in, typed values come
out. The Trio UDP adapter (``media/rtp_leg.py``) is the only place that touches sockets or clocks.
"""
