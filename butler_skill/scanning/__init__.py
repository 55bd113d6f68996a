"""The scanner's I/O side: reading files, the git index and history, and baselines of accepted findings.

The rules themselves are pure and live in butler_skill.core.scan.
"""
