"""Asterisk REST Interface (ARI): callbridge as a Stasis application.

Sans-I/O cores (``events``: JSON -> typed events; ``requests``: REST calls as values;
``reconcile``: what to do after a reconnect, from ``GET /channels`` and ``/bridges``) under thin
Trio adapters (``rest``, ``events_socket``, ``client``, ``app``, ``leg``). It sits beside the
SIP user agent, not inside the call: a call that enters ``Stasis(NAME)`` reaches the media core
as an ordinary AudioSocket connection (ARI ExternalMedia), claimed by its UUID.
"""
