"""Creating, listing and revoking gateway access tokens (the CLI's `butler token ...` calls these)."""

from __future__ import annotations

import secrets

from butler_skill.errors import InvalidInput
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import TOKEN_PREFIX, AccessToken, AccessTokenStore, Role

DEFAULT_DAILY_BUDGET = 1_000_000


def new_secret() -> str:
    """A fresh token: the prefix (so scanners and people can tell what it is) and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(ctx: Context, name: str, *, role: Role = "agent",
                 daily_budget: int = DEFAULT_DAILY_BUDGET) -> tuple[AccessToken, str]:
    """A new token and its secret. The secret is returned here once and stored nowhere (only its hash)."""
    if not name.strip() or len(name) > 100:
        raise InvalidInput("a token needs a name of 1 to 100 characters", path="name")
    if role not in ("agent", "admin"):
        raise InvalidInput("role is agent or admin", path="role")
    secret = new_secret()
    token = AccessTokenStore(ctx.db).create(token_id=ctx.new_id("tok"), name=name.strip(), secret=secret, role=role,
                                            daily_budget=daily_budget, now=ctx.now())
    return token, secret
