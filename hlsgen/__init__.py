"""HLS generation from the hardware dialect: one kernel library, Vitis and Catapult backends, C simulation."""

from .project import Project, generate

__all__ = ["Project", "generate"]
