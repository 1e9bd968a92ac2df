"""Figures, tables and the HTML report, built only from what run folders hold."""
