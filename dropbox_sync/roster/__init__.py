"""Roster memory: each user's row as Infiniti last confirmed it, and what an import
changes against it (added, changed, leavers, the change guard).
"""
