"""Embedded sample inputs for `butler demo` and the examples: no files or keys needed."""

SAMPLE_PRD = """\
# PRD: Weekly market brief generator

Build a service that produces a weekly brief on the LLM API market for our finance team.

Requirements:
1. Gather public price lists from at least five LLM providers.
2. Extract input and output prices per million tokens into one table.
3. Analyze week-over-week price changes and flag moves above 10%.
4. Write a two-page brief with a summary, the table and the flagged moves.
5. Review the brief for errors before it is sent.

The brief must be reproducible from the stored price snapshots.
"""
