"""SIP: callbridge's own user agent, and the Kamailio / Asterisk configurations beside it."""
