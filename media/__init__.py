"""The media core: legs in, audio normalised, one agent link per call, paced audio out."""
