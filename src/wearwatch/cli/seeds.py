"""``--seeds``: one parser for the seed lists of commands that repeat a run per seed.

``wearwatch train cmapss`` and ``wearwatch mill evaluate`` both take ``--seeds 1-5`` (a
range, both ends included) or ``--seeds 1,3,7`` (a list), or a mix (``1-3,7``). A descending
range, a repeated seed or anything that is not an integer is refused with the value named, so
a typo never silently runs fewer seeds.

>>> parse_seeds("1-5")
[1, 2, 3, 4, 5]
>>> parse_seeds("1-3, 7")
[1, 2, 3, 7]
>>> parse_seeds("5-1")
Traceback (most recent call last):
...
ValueError: --seeds '5-1': the range 5-1 is descending (write 1-5)
>>> parse_seeds("1-99999999999")
Traceback (most recent call last):
...
ValueError: --seeds '1-99999999999': more than 1000 seeds
"""

from __future__ import annotations

_HINT = "expected a range like 1-5 or a list like 1,3,7"
#: More runs than anyone means to start (each is seconds to minutes): a typo like 1-50000.
MAX_SEEDS = 1000


def parse_seeds(value: str, option: str = "--seeds") -> list[int]:
    """The seeds ``value`` names, in the order given; ``ValueError`` naming ``option``."""
    seeds: list[int] = []
    for part in value.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{option} {value!r}: {_HINT}") from None
        if last < first:
            raise ValueError(
                f"{option} {value!r}: the range {first}-{last} is descending (write {last}-{first})"
            )
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise ValueError(f"{option} {value!r}: more than {MAX_SEEDS} seeds")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{option} {value!r}: a seed is repeated; expected distinct seeds")
    return seeds


def seed_option(value: str, option: str = "--seeds") -> list[int]:
    """:func:`parse_seeds` for a CLI: a bad value exits with one line naming it."""
    from wearwatch.cli.errors import fail

    try:
        return parse_seeds(value, option)
    except ValueError as exc:
        fail(str(exc))
