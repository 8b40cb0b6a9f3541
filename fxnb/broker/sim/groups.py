"""The ``group=`` filter syntax of positions_get / symbols_get / history_*_get.

Comma-separated patterns applied left to right; ``*`` is a wildcard, ``!``
excludes: ``"*,!*JPY*"`` = everything except names containing JPY. A name is
selected when the last pattern that matches it is an inclusion. Matching is
case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=64)
def matcher(group: str) -> Callable[[str], bool]:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for part in group.split(","):
        part = part.strip()
        if not part:
            continue
        exclude = part.startswith("!")
        pattern = part[1:].strip() if exclude else part
        regex = ".*".join(re.escape(chunk) for chunk in pattern.split("*"))
        rules.append((exclude, re.compile(regex, re.IGNORECASE)))

    def match(name: str) -> bool:
        selected = False
        for exclude, rx in rules:
            if rx.fullmatch(name):
                selected = not exclude
        return selected

    return match
