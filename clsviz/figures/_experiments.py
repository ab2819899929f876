"""Figures for this page area (filled in as the page lands)."""

__all__: list[str] = []
