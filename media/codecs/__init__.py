"""Narrowband codecs (G.711 today; G.722 where a maintained library gives it)."""
