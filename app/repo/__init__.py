"""Importing a repository: archives turned into a safe, normalized tree; pure in-process code."""
