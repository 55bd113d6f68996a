"""`butler prices`: show the price and output cap each key settles at, and refresh the vendored price table.

    butler prices                  # every key: model, prices per million, cap, where each figure came from
    butler prices update           # regenerate butler_skill/data/model_prices.json from an installed litellm
    butler prices update --from F  # ... or from a copy of LiteLLM's model_prices_and_context_window.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from butler_skill import price_table
from butler_skill.config import keys_path_from, parse_keys, resolve_key
from butler_skill.errors import ConfigError


def cmd_prices(args: argparse.Namespace) -> int:
    if args.action == "update":
        try:
            out, n = price_table.update(Path(args.source) if args.source else None,
                                        Path(args.out) if args.out else price_table.DATA_PATH)
        except (OSError, ValueError, KeyError) as exc:
            print(f"butler: prices update: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {out}: {n} models")
        return 0
    path = keys_path_from(os.environ, Path(args.keys) if args.keys else None)
    try:
        keys = parse_keys(path.read_text("utf-8"), str(path))
    except OSError as exc:
        print(f"butler: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"butler: {exc.message}", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    for k in keys:
        r = resolve_key(k)
        rows.append({"key_id": r.id, "provider": r.provider, "model": r.model, "source": r.price_source,
                     "input_per_m": str(r.price_in_exact), "output_per_m": str(r.price_out_exact),
                     "cache_read_per_m": str(r.price_cache_read_per_m),
                     "cache_write_per_m": str(r.price_cache_write_per_m),
                     "cache_write_1h_per_m": str(r.price_cache_write_1h_per_m),
                     "web_search_per_request": str(r.web_search_per_request),
                     "max_output_tokens": r.max_output_tokens, "token_param": r.token_param})
    print(json.dumps(rows, indent=2))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("prices", help="prices and output caps per key; `update` refreshes the price table")
    p.add_argument("action", nargs="?", choices=["show", "update"], default="show")
    p.add_argument("--from", dest="source", help="LiteLLM's model_prices_and_context_window.json (default: the "
                   "copy inside an installed litellm package)")
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_prices)
