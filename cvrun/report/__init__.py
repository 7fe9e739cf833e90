"""Summaries and plots of runs."""
