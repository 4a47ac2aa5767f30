"""The README and the manual in docs/ stay complete, linked and in step with the code.

Static checks (no processes but one `--about`):
* the README is a landing page: short, with both commands of the quick start on its first screen;
* every setting of the config schema has its row in docs/settings.md, as `--about` prints it;
* every warning and error line the package can print (read from its source: the messages of
  the exceptions that end a run or a page, and of every warning/error log call) is in
  docs/troubleshooting.md, so a user who searches for a line finds what it means;
* every relative link and #anchor in README.md and docs/*.md resolves, by GitHub's anchor rules,
  outside code blocks and code spans.
"""

from __future__ import annotations

import ast
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from tap_mixpanel_profiles.settings import CONFIG_SCHEMA
from tests.helpers.tap_runner import TAP

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tap_mixpanel_profiles"
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]

#: Exceptions whose message reaches the user: the TapErrors that end a run, and the two a
#: page fails with (logged as the ERROR/WARNING line naming the page).
PRINTED_EXCEPTIONS = {
    "TapError",
    "ConfigError",
    "AuthError",
    "FatalResponseError",
    "IncompleteSyncError",
    "OutputClosed",
    "Interrupted",
    "PartitionFailed",
    "SessionExpired",
}
LOG_LEVELS = {"warning", "error", "critical"}
PLACEHOLDER = "…"


# ------------------------------------------------------------------------------ helpers
def template(node: ast.expr, *, percent: bool) -> str | None:
    """A message literal with every interpolated value as `…` (None: not a literal)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else PLACEHOLDER for v in node.values)
    else:
        return None
    if percent:
        text = re.sub(r"%[-+ #0]*\d*(?:\.\d+)?[sdrfig]", PLACEHOLDER, text)
    return text


def printed_lines() -> dict[str, str]:
    """{message template: where} for every line the package (not the simulator) can print."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "simulator" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in PRINTED_EXCEPTIONS:
                text = template(node.args[0], percent=False)
            elif isinstance(func, ast.Attribute) and func.attr in LOG_LEVELS:
                text = template(node.args[0], percent=True)
            else:
                continue
            if text is None:
                continue
            text = text.strip(PLACEHOLDER + " ")
            if re.search(r"[A-Za-z]{2}", text):  # "%s" alone is some other line, listed itself
                found.setdefault(text, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def outside_code(text: str) -> str:
    """`text` without fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^```.*?^```[ \t]*$", "", text, flags=re.S | re.M)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: the text of its markdown, lower-cased, with every
    character but letters, digits, `_`, `-` and spaces removed, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LMN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    text = re.sub(r"^```.*?^```[ \t]*$", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for match in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", text, re.M):
        base = anchor(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def links(path: Path) -> list[str]:
    text = outside_code(path.read_text(encoding="utf-8"))
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)


# -------------------------------------------------------------------------------- tests
def test_the_anchor_rule_is_githubs() -> None:
    assert anchor("What `$last_seen` misses — schedule a full refresh") == (
        "what-last_seen-misses--schedule-a-full-refresh"
    )
    assert anchor("Rate limits: quota, stop mode") == "rate-limits-quota-stop-mode"
    assert anchor("`cohort_members`") == "cohort_members"
    seconds = "seconds-in-meltanoyml-whole-numbers"
    assert anchor("Seconds in `meltano.yml`: whole numbers") == seconds


def test_the_readme_is_a_landing_page_with_both_commands_first() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move detail into docs/"
    first_screen = "\n".join(lines[:50])
    assert "./scripts/demo.sh" in first_screen and "./scripts/test.sh" in first_screen
    readme = "\n".join(lines)
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name}" in readme, f"the README does not link docs/{page.name}"


def test_every_setting_has_its_row_in_docs_settings() -> None:
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = [name for name in CONFIG_SCHEMA["properties"] if f"\n| {name} |" not in text]
    assert not missing, (
        f"docs/settings.md lacks {missing}: paste `tap-mixpanel-profiles --about --format "
        "markdown`'s table again"
    )


def test_the_settings_table_is_the_one_about_prints() -> None:
    about = subprocess.run(
        [TAP, "--about", "--format", "markdown"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    rows = [line for line in about.splitlines() if line.startswith("| ")]
    ours = [r for r in rows if r.split("|")[1].strip() in CONFIG_SCHEMA["properties"]]
    assert len(ours) == len(CONFIG_SCHEMA["properties"])
    stale = [r.split("|")[1].strip() for r in ours if r not in text]
    assert not stale, f"docs/settings.md describes {stale} differently from --about: paste it"


def test_every_line_the_tap_prints_is_in_troubleshooting() -> None:
    lines = printed_lines()
    assert len(lines) > 60, "the source scan found too few messages: has the code moved?"
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    missing = {line: where for line, where in lines.items() if line not in text}
    assert not missing, "docs/troubleshooting.md lacks these lines:\n" + "\n".join(
        f"  {where}: {line}" for line, where in sorted(missing.items(), key=lambda i: i[1])
    )


def test_the_scan_sees_a_new_message(tmp_path: Path) -> None:
    """The source scan finds f-strings, %-formats and plain literals (so the test above fails
    when a new line is not documented)."""
    tree = ast.parse(
        'raise ConfigError(f"Setting {name!r} is odd.")\n'
        'log.warning("%s pages took %.1f s", n, s)\n'
        'raise PartitionFailed("plain")\n'
    )
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    texts = [template(c.args[0], percent=isinstance(c.func, ast.Attribute)) for c in calls]
    assert texts == ["Setting … is odd.", "… pages took … s", "plain"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)
