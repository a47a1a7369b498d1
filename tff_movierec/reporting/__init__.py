"""Plots and Markdown summaries of a run's result tables."""
