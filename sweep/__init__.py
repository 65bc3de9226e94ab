"""What to run and where: presets, spec validation, the Ray Tune launcher, the results store."""

__version__ = "0.1.0"
