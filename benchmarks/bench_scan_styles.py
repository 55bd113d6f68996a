"""How many generated passwords of each style the scanner misses, in URLs and under secret names.

    python benchmarks/bench_scan_styles.py           # 2,000 passwords per style and context (fixed seeds)
    python benchmarks/bench_scan_styles.py -n 500

Styles: Safari / iCloud Keychain (`xunbyc-0Ciqfu-hamkos`: three groups of six letters, a capital, a digit ending
a group), 16 random alphanumerics, four groups of five random lower-case letters, and random RFC 3986 URL-safe
characters (unreserved and sub-delims but quotes, 12 to 32; only in URLs, where they need no quoting). A value
that spells fill or a stand-in word by chance (`xxxx`, `fake`, `your`, ...) is drawn again: the rules treat those
as stand-ins on purpose. Prints misses per style; the figure is a count, not a time.
"""

from __future__ import annotations

import argparse
import base64
import random
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

from butler_skill.core.scan import scan_text

ALNUM = string.ascii_letters + string.digits
URL_SAFE = ALNUM + "-._~!$&()*+,;="
STAND_IN = ("xxxx", "example", "placeholder", "dummy", "your", "redacted", "changeme", "sample", "insert", "replace",
            "fake", "notreal", "here")


def keychain(rng: random.Random) -> str:
    groups = [[rng.choice("bcdfghjkmnpqrstvwxz" if i % 3 != 1 else "aeiouy") for i in range(6)] for _ in range(3)]
    digit = (rng.randrange(3), rng.choice((0, 5)))
    capital = rng.choice([(g, i) for g in range(3) for i in range(6) if (g, i) != digit])
    groups[digit[0]][digit[1]] = rng.choice(string.digits)
    groups[capital[0]][capital[1]] = groups[capital[0]][capital[1]].upper()
    return "-".join("".join(x) for x in groups)


def alnum16(rng: random.Random) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(16))


def letter_groups(rng: random.Random) -> str:
    return "-".join("".join(rng.choice(string.ascii_lowercase) for _ in range(5)) for _ in range(4))


def url_safe(rng: random.Random) -> str:
    return rng.choice(ALNUM) + "".join(rng.choice(URL_SAFE) for _ in range(rng.randint(11, 31)))


STYLES = {"keychain": keychain, "alnum16": alnum16, "letter-groups": letter_groups, "url-safe": url_safe}
CONTEXTS = {
    "URL (postgres://app:PW@db)": ("DATABASE_URL=postgres://app:{v}@db.internal:5432/app\n", ".env"),
    "DB_PASSWORD=PW (.env)": ("DB_PASSWORD={v}\n", ".env"),
    'password = "PW" (.py)': ('password = "{v}"\n', "settings.py"),
    "password: PW (YAML)": ("db:\n  password: {v}\n", "values.yaml"),
    "Authorization: Bearer PW": ('curl -H "Authorization: Bearer {v}" https://api.example.test\n', "run.sh"),
    "Authorization: Basic b64(app:PW)": ('curl -H "Authorization: Basic {b}" https://api.example.test\n', "run.sh"),
    "API_TOKEN=PW (.env)": ("API_TOKEN={v}\n", ".env"),
    'client_secret = "PW" (.py)': ('client_secret = "{v}"\n', "client.py"),
}


def draw(style: str, rng: random.Random) -> str:
    while True:
        pw = STYLES[style](rng)
        if not any(w in pw or w.upper() in pw for w in STAND_IN):
            return pw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="passwords per style and context")
    args = parser.parse_args()
    print(f"machine: {machine()}\nmissed of {args.n:,} per style")
    print(f"  {'context':34s}" + "".join(f"{s:>15s}" for s in STYLES))
    for name, (template, path) in CONTEXTS.items():
        row = []
        for style in STYLES:
            if style == "url-safe" and not name.startswith("URL"):
                row.append("-")  # `(`, `;`, `,` end a bare value; these characters are for URLs
                continue
            rng = random.Random(f"{name}:{style}")
            missed = 0
            for _ in range(args.n):
                pw = draw(style, rng)
                text = template.format(v=pw, b=base64.b64encode(f"app:{pw}".encode()).decode())
                missed += not scan_text(text, path)
            row.append(str(missed))
        print(f"  {name:34s}" + "".join(f"{r:>15s}" for r in row))


if __name__ == "__main__":
    main()
