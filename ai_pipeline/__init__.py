"""The agent: an asyncio process serving the agent link, one pipecat pipeline per call."""
