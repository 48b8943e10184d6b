"""vast-launch: run training on rented Vast.ai GPUs without ever paying for a forgotten machine."""

__version__ = "0.1.0"
