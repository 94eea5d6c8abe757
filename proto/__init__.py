"""The agent link's wire format (``frames.proto``) and its typed, internal counterparts.

Everything inside callbridge passes the plain dataclasses of :mod:`proto.messages`; only
:mod:`proto.codec` touches the generated protobuf classes.
"""
