"""Figures for the reports, drawn with matplotlib's file-only backend (no display on a
cluster or in CI). Reports import `plt` from here, so the backend is chosen once."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after use(): pyplot reads the backend at import)

__all__ = ["plt"]
