"""Speech and dialogue engines for the agent pipeline, offline and cloud, as pipecat services.

Offline engines load their models from PyPI packages (nothing is downloaded at run time) once per
process, through :class:`~ai_pipeline.engines.models.ModelStore`, and every call shares them.
"""
