"""Familiar's long-term memory and its SQLite store: the bottom layer every other package uses."""
