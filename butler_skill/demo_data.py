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

SAMPLE_TASK_NAME = "LLM price watch"
SAMPLE_TASK = """\
1. Research the public price lists of five LLM API providers
2. Gather last week's price snapshots from the archive
3. Analyze week-over-week price changes and flag moves above 10%
4. Write a two-page brief for the finance team
5. Review the brief for errors before it is sent
"""
# The demo's review step (the fifth part) meets a failing provider on the first round, so the retry has
# work to do. Every sub-agent's prompt holds the whole task, so the marker names the part itself.
FAILING_MARKER = "Your part (st-5)"
