"""User profiles of the Mixpanel simulator: deterministic, deliberately awkward data.

Everything is derived from ``seed`` and a fixed ``now`` so that tests can assert exact values. The
data is meant to break naive taps: distinct ids with unicode, emoji, quotes, backslashes and
surrounding spaces; values with newlines, nested objects and lists, nulls, booleans, floats; a few
~50 KB strings; ~5 % of profiles without ``$last_seen``; property names that trip typed columns
(case twins, the tap's own column names, spaces, dots, quotes) and values of another type than
their property's usual one (see ``_awkward_names``). With ``realistic`` each profile has
20-40 properties with nested values, for throughput benchmarks.

Apart from :mod:`.data` (records, data sets, timestamps), which the engine, groups, cohorts and
replies share, because only the server generates user profiles. Each profile's JSON is built here,
once, as a per-profile head and the tail of its template, shared with other profiles.
"""

from __future__ import annotations

import random
import time
import typing as t
import uuid

from .data import (
    LAST_SEEN_SPAN_SECONDS,
    MISSING_LAST_SEEN_RATE,
    ProfileRecord,
    dumps,
    format_ts,
    gc_paused,
)

__all__ = ["generate_profiles"]

BIG_VALUE_EVERY = 500  # profiles with index % 500 == 250 carry a ~50 KB string
BIG_VALUE_CHARS = 50_000

_FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Eun-ji",
    "Fatima",
    "Gonzalo",
    "Hiroshi",
    "Ingrid",
    "José",
    "Kwame",
    "Łukasz",
    "Mei",
    "Nnamdi",
    "O'Brien",
    "Priya",
    "Quinn",
    "Rūta",
    "Søren",
    "Tomás",
    "Ümit",
    "Valentina",
    "Wen",
    "Xóchitl",
    "Yusuf",
    "Zoë",
]
_LAST = [
    "Smith",
    "Müller",
    "García",
    "Nguyễn",
    "O'Connor",
    "Kowalski",
    "山田",
    "Иванов",
    "Dubois",
    "Rossi",
    "D'Angelo",
    "van der Berg",
    "Ó Súilleabháin",
    "Nakamura",
    "Al-Hassan",
]
_CITIES = [
    ("Berlin", "Berlin", "DE"),
    ("São Paulo", "São Paulo", "BR"),
    ("Zürich", "Zürich", "CH"),
    ("東京", "Tokyo", "JP"),
    ("New York", "New York", "US"),
    ("Kraków", "Lesser Poland", "PL"),
    ("Montréal", "Quebec", "CA"),
    ("Reykjavík", "Capital Region", "IS"),
    ("Lagos", "Lagos", "NG"),
    ("Москва", "Moscow", "RU"),
    ("Ciudad de México", "CDMX", "MX"),
    (None, None, None),
]
_PLANS = ["free", "starter", "pro", "enterprise", None]
_NOTES = [
    'says "hi"',
    "back\\slash \\n not a newline",
    "multi\nline\nnote",
    "tab\tseparated",
    "emoji 🎉🚀 and CJK 漢字",
    "",
    "  padded  ",
    "semi;colon,comma",
    "<b>html</b> & amp",
    "null",
    '{"looks": "like json"}',
    "trailing backslash \\",
]
_TAGS = ["beta", "vip", "churn-risk", "ünïcödé", "with space", 'q"uote', "a,b", "🔥"]
_BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Opera", None]
_OS = ["Mac OS X", "Windows", "Linux", "iOS", "Android"]


def _distinct_id(i: int, rng: random.Random) -> str:
    """Awkward but unique ids: every pattern embeds the index ``i`` unambiguously."""
    kind = rng.randrange(10)
    if kind == 0:
        return f"user-{i}"
    if kind == 1:
        return f"ユーザー-{i}"
    if kind == 2:
        return f"😀 emoji {i} 🚀"
    if kind == 3:
        return f"quote\"d'{i}"
    if kind == 4:
        return f"back\\slash\\{i}"
    if kind == 5:
        return str(uuid.UUID(int=(rng.getrandbits(96) << 32) | i))
    if kind == 6:
        return f"  spaces  {i}  "
    if kind == 7:
        return str(i)
    if kind == 8:
        return f"email{i}@example.com"
    return f"$device:{rng.getrandbits(48):012x}-{i}"


def _big_value(i: int) -> str:
    chunk = 'Lorem ipsum "quoted" \\ back ünïcödé 🎉\nnew line, '
    return (f"[{i}] " + chunk * (BIG_VALUE_CHARS // len(chunk) + 1))[:BIG_VALUE_CHARS]


def _template(rng: random.Random, now: int, realistic: bool, wide: int = 0) -> dict[str, t.Any]:
    """Properties shared by the profiles drawn from one template (location, plan, custom props...).

    Building a pool of templates once and giving each profile only a few unique values is what
    makes 200 000 realistic profiles cheap to generate (a couple of seconds instead of ~20).
    """
    rnd = rng.random
    city, region, country = _CITIES[rng.randrange(len(_CITIES))]
    props: dict[str, t.Any] = {
        "$city": city,
        "$region": region,
        "$country_code": country,
        "plan": _PLANS[rng.randrange(len(_PLANS))],
        "age": rng.randrange(16, 90) if rnd() < 0.8 else None,
        "is_paying": rnd() < 0.3,
        "tags": [_TAGS[rng.randrange(len(_TAGS))] for _ in range(rng.randrange(4))],
        "notes": _NOTES[rng.randrange(len(_NOTES))],
    }
    if rnd() < 0.3:
        props["address"] = {
            "street": f"{rng.randrange(1, 999)} Rue de l'Église",
            "zip": f"{rng.randrange(100000):05d}",
            "geo": {"lat": round(rnd() * 180 - 90, 6), "lon": round(rnd() * 360 - 180, 6)},
            "verified": None,
        }
    if realistic:
        # Unique keys per profile are 6-8 (7 typically): aim the total at 20-40 keys.
        extra = rng.randint(21, 39) - _TYPICAL_UNIQUE_KEYS - len(props)
        props.update(_realistic_extra(rng, now, extra))
    else:
        props.update(_awkward_names(rng, now))
    if wide:
        props.update(_wide_extra(rng, now, wide))
    return props


def _awkward_names(rng: random.Random, now: int) -> dict[str, t.Any]:
    """Properties whose names or values trip typed columns: case twins (``Plan``/``plan``,
    ``UTM_Medium``/``utm_medium``), names of the tap's own columns, spaces, dots and quotes,
    and values of another type than the property's commonest (``drift``: a number, sometimes
    text; ``signup_at``: a date-time, sometimes an epoch or a date no database holds)."""
    rnd = rng.random
    return {
        "Plan": ["Gold", "Silver", "Bronze", None][rng.randrange(4)],
        "UTM_Medium": ["Email", "CPC", "Social"][rng.randrange(3)],
        "utm_medium": ["email", "cpc", "social"][rng.randrange(3)],
        "distinct_id": f"crm-{rng.randrange(10**6)}",
        "last_seen": ["last week", "never", "2019"][rng.randrange(3)],
        "properties": {"source": ["import", "api"][rng.randrange(2)]},
        "Favorite Color": ["teal", "ünïcödé blue", "red"][rng.randrange(3)],
        "utm.source": ["google", "newsletter"][rng.randrange(2)],
        'say "cheese"': ["🧀", "brie"][rng.randrange(2)],
        "drift": rng.randrange(100) if rnd() < 0.8 else ["n/a", "12"][rng.randrange(2)],
        "signup_at": (
            format_ts(now - int(rnd() * LAST_SEEN_SPAN_SECONDS))
            if rnd() < 0.8
            else ["1638298874", "15/08/53895", "2024-02-30T10:00:00"][rng.randrange(3)]
        ),
        "verified": (rnd() < 0.5) if rnd() < 0.9 else "yes",
    }


def _wide_extra(rng: random.Random, now: int, pool: int) -> dict[str, t.Any]:
    """Ten properties of a pool of ``pool`` names (``wide_000`` ...), typed by their number."""
    out: dict[str, t.Any] = {}
    for k in rng.sample(range(pool), min(10, pool)):
        kind = k % 5
        value: t.Any
        if kind == 0:
            value = round(rng.random() * 1000, 3)
        elif kind == 1:
            value = f"value {rng.randrange(100)}"
        elif kind == 2:
            value = rng.random() < 0.5
        elif kind == 3:
            value = format_ts(now - rng.randrange(LAST_SEEN_SPAN_SECONDS))
        else:
            value = [rng.randrange(10) for _ in range(rng.randrange(3))]
        out[f"wide_{k:03d}"] = value
    return out


_TYPICAL_UNIQUE_KEYS = 7
_TEMPLATES = 1021


def _realistic_extra(rng: random.Random, now: int, count: int) -> dict[str, t.Any]:
    """Custom properties with nested objects and lists, for throughput benchmarks."""
    rnd = rng.random
    pool: list[tuple[str, t.Any]] = [
        ("$browser", _BROWSERS[rng.randrange(len(_BROWSERS))]),
        ("$os", _OS[rng.randrange(len(_OS))]),
        ("$timezone", ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"][rng.randrange(4)]),
        ("lifetime_value", round(rnd() * 5000, 2)),
        ("sessions_count", rng.randrange(10_000)),
        ("last_purchase", format_ts(now - int(rnd() * LAST_SEEN_SPAN_SECONDS))),
        (
            "utm",
            {
                "source": ["google", "newsletter", "ünïcödé", None][rng.randrange(4)],
                "medium": "cpc",
                "campaign": f"spring-{rng.randrange(50)}",
            },
        ),
        (
            "devices",
            [
                {
                    "id": f"{rng.getrandbits(32):08x}",
                    "os": _OS[rng.randrange(len(_OS))],
                    "push": rnd() < 0.5,
                }
                for _ in range(rng.randrange(1, 4))
            ],
        ),
        (
            "preferences",
            {
                "newsletter": rnd() < 0.5,
                "language": ["en", "de", "ja", "pt-BR"][rng.randrange(4)],
                "theme": {"dark": rnd() < 0.5, "accent": f"#{rng.getrandbits(24):06x}"},
            },
        ),
        (
            "experiment_groups",
            {f"exp_{k}": ["control", "variant"][rng.randrange(2)] for k in range(3)},
        ),
        ("nps", rng.randrange(11) if rnd() < 0.5 else None),
        ("referrer", f"https://example.com/ref?id={rng.randrange(10**6)}&q=a%20b"),
        (
            "company",
            {"name": f"{_LAST[rng.randrange(len(_LAST))]} & Co.", "size": rng.randrange(1, 5000)},
        ),
        ("favorite_numbers", [round(rnd() * 100, 4) for _ in range(rng.randrange(5))]),
        ("signup_platform", ["web", "ios", "android"][rng.randrange(3)]),
        ("support_tickets", rng.randrange(20)),
        ("trial_ends", format_ts(now + int(rnd() * 30 * 86_400)) if rnd() < 0.2 else None),
        ("ratio", rnd()),
        ("big_int", rng.getrandbits(62)),
        ("negative", -rng.randrange(1_000_000)),
        ("empty_obj", {}),
        ("empty_list", []),
        ("matrix", [[rng.randrange(10) for _ in range(3)] for _ in range(2)]),
        ("comment", _NOTES[rng.randrange(len(_NOTES))]),
        ("team_role", ["admin", "member", "viewer"][rng.randrange(3)]),
        ("feature_flags", [f"ff_{rng.randrange(40)}" for _ in range(rng.randrange(6))]),
        ("karma", rng.randrange(-50, 500)),
    ]
    return {
        name if name.startswith("$") else f"custom_{name}": value for name, value in pool[:count]
    }


class _TsFormatter:
    """``format_ts`` with a per-day cache: strftime dominates generation time otherwise."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}

    def __call__(self, epoch: int) -> str:
        day, sod = divmod(epoch, 86_400)
        date = self.days.get(day)
        if date is None:
            date = self.days[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
        return f"{date}{sod // 3600:02d}:{sod % 3600 // 60:02d}:{sod % 60:02d}"


def generate_profiles(
    count: int, seed: int, now: int, realistic: bool = False, wide: int = 0
) -> list[ProfileRecord]:
    """Build ``count`` profiles deterministically from ``seed``; ``now`` is epoch seconds (UTC).

    Each profile = a few unique values (id, names, e-mail, ``$created``, ``score``, ``$last_seen``,
    sometimes a 50 KB ``bio``) followed by the properties of one of ~1000 shared templates.
    """
    with gc_paused():  # millions of small containers: the cyclic GC would cost ~40 % more time
        return _generate(count, seed, now, realistic, wide)


def _generate(count: int, seed: int, now: int, realistic: bool, wide: int) -> list[ProfileRecord]:
    rng = random.Random(seed)
    trng = random.Random(seed * 7919 + 1)
    templates = []
    for _ in range(min(_TEMPLATES, max(count, 1))):
        tpl = _template(trng, now, realistic, wide)
        frag = dumps(tpl)[1:-1]
        templates.append((tpl, ((", " + frag) if frag else "").encode() + b"}}"))
    names = []
    for first in _FIRST:
        for last in _LAST:
            names.append(
                (
                    first,
                    last,
                    dumps(first.lower())[1:-1],
                    f'"$name": {dumps(first + " " + last)}, "$first_name": {dumps(first)}, '
                    f'"$last_name": {dumps(last)}',
                )
            )
    fmt = _TsFormatter()
    rnd = rng.random
    n_templates, n_names = len(templates), len(names)
    big_every, big_at = BIG_VALUE_EVERY, BIG_VALUE_EVERY // 2
    records: list[ProfileRecord] = []
    append = records.append
    for i in range(count):
        distinct_id = _distinct_id(i, rng)
        first, last, email_local, names_json = names[int(rnd() * n_names)]
        tpl, tail = templates[int(rnd() * n_templates)]
        seen = now - int(rnd() * LAST_SEEN_SPAN_SECONDS)
        created = fmt(seen - int(rnd() * LAST_SEEN_SPAN_SECONDS))
        score = round(rnd() * 1000 - 100, 3)
        props: dict[str, t.Any] = {
            "$email": f"{first.lower()}.{i}@example.com",
            "$name": f"{first} {last}",
            "$first_name": first,
            "$last_name": last,
            "$created": created,
            "score": score,
        }
        head = (
            f'{{"$distinct_id": {dumps(distinct_id)}, '
            f'"$properties": {{"$email": "{email_local}.{i}@example.com", '
            f'{names_json}, "$created": "{created}", "score": {score!r}'
        )
        if rnd() >= MISSING_LAST_SEEN_RATE:
            props["$last_seen"] = last_seen = fmt(seen)
            head += f', "$last_seen": "{last_seen}"'
        if i % big_every == big_at:
            props["bio"] = big = _big_value(i)
            head += ', "bio": ' + dumps(big)
        props.update(tpl)
        append(ProfileRecord(i, distinct_id, props, (head.encode(), tail)))
    return records
