"""``callbridge bench``: capacity, latency and quality figures."""
