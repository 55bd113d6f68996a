"""The rate-limit parsers skip their dozen lookups when the lean client's headers (names lower case) name none of
their headers: property, over random header sets, the answer equals the full parse of the same headers."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.adapters.providers.anthropic import parse_anthropic_rate_limit
from butler_skill.adapters.providers.lean import Headers
from butler_skill.adapters.providers.openai_compat import parse_openai_rate_limit

NOW = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)
NAMES = st.sampled_from([
    "content-type", "content-length", "x-request-id", "date", "retry-after", "retry-after-ms",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-requests-reset", "x-ratelimit", "retry", "server", "openai-processing-ms"])
VALUES = st.sampled_from(["7", "1.5", "6m0s", "120ms", "2026-12-04T13:00:30Z", "Fri, 04 Dec 2026 13:00:09 GMT",
                          "junk", "", "100"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=6))
def test_a_glance_at_the_names_answers_as_the_full_parse(raw: dict[str, str]) -> None:
    for parse in (parse_openai_rate_limit, parse_anthropic_rate_limit):
        assert parse(Headers(raw), NOW) == parse(dict(raw), NOW)
