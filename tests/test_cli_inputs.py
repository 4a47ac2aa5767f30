"""Bad input on the command line: one clear line, the right exit code, nothing silent.

The console script in a subprocess, as schedulers run it, against the loopback Engage fake:

* a --config file that is missing, not JSON or not an object, a --state / --catalog file that
  is not JSON or missing, an unknown option: one line naming the problem, exit 3, no traceback,
  no secret;
* STATE of the wrong shape: a warning naming the stream, a full sync, exit 0;
* a bookmark that looks like $last_seen but is no date: a warning naming the value, a full
  sync (a valid bookmark, for contrast, runs incrementally);
* settings of capabilities the tap does not offer (flattening, batch, activate-version):
  refused with one line and exit 3, and absent from --about;
* the SDK's own options (--about, --discover, --version, --help) still exit 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest

from tap_mixpanel_profiles.capabilities import CAPABILITIES
from tap_mixpanel_profiles.errors import EXIT_AUTH, EXIT_CONFIG
from tests.helpers.engage_fake import SA_SECRET, EngageFake, Reply, base_config, serve_http
from tests.helpers.tap_runner import TAP

PROFILES = 25


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAP, *args], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line or line.startswith("Error")]


def assert_one_line_exit_3(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "Traceback" not in done.stderr and "Usage:" not in done.stderr, done.stderr
    (line,) = errors(done.stderr)
    for word in words:
        assert word in line, line
    assert done.stdout == ""
    assert SA_SECRET not in done.stderr
    return line


# ------------------------------------------------------------------- files that cannot be read
def test_config_file_missing(tmp_path: Path) -> None:
    done = run(tmp_path, "--config", "nope.json")
    assert_one_line_exit_3(done, "The config file nope.json was not found.")


def test_config_file_not_json_never_prints_its_content(tmp_path: Path) -> None:
    broken = json.dumps(base_config())[:-1] + ',"x": }'  # holds the secret, and breaks after it
    path = write(tmp_path, "tap.json", broken)
    line = assert_one_line_exit_3(run(tmp_path, "--config", path), path, "is not valid JSON")
    assert "line 1 column" in line


def test_config_file_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "tap.json", "[1, 2]")
    assert_one_line_exit_3(run(tmp_path, "--config", path), path, "must hold a JSON object")


def test_config_file_is_a_directory(tmp_path: Path) -> None:
    assert_one_line_exit_3(run(tmp_path, "--config", str(tmp_path)), "is a directory")


@pytest.mark.parametrize("option", ["--state", "--catalog"])
def test_state_or_catalog_file_not_json(tmp_path: Path, option: str) -> None:
    config = write(tmp_path, "tap.json", json.dumps(base_config()))
    path = write(tmp_path, "input.json", "{bad")
    what = option.lstrip("-")
    assert_one_line_exit_3(
        run(tmp_path, "--config", config, option, path), f"The {what} file {path} is not valid JSON"
    )


def test_state_file_missing_and_unknown_options_are_config_errors(tmp_path: Path) -> None:
    config = write(tmp_path, "tap.json", json.dumps(base_config()))
    assert_one_line_exit_3(
        run(tmp_path, "--config", config, "--state", "nope.json"), "'--state'", "nope.json"
    )
    assert_one_line_exit_3(run(tmp_path, "--config", config, "--sate", "x"), "--sate")


# ---------------------------------------------------------------------- STATE that is not right
def sync(
    tmp_path: Path, state: t.Any, **config: t.Any
) -> tuple[subprocess.CompletedProcess[str], EngageFake]:
    fake = EngageFake(PROFILES)
    with serve_http(fake) as url:
        path = write(tmp_path, "tap.json", json.dumps(base_config(api_url=url, **config)))
        args = ["--config", path]
        if state is not None:
            args += ["--state", write(tmp_path, "state.json", json.dumps(state))]
        done = run(tmp_path, *args)
    return done, fake


def records(done: subprocess.CompletedProcess[str]) -> list[dict[str, t.Any]]:
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"bookmarks": {"profiles": "oops"}}, "STATE of stream 'profiles': expected an object"),
        ({"bookmarks": "oops"}, "'bookmarks' must be an object, found str"),
        ({"bookmarks": {"profiles": {"partitions": "x"}}}, "'partitions' must be a list"),
        ({"bookmarks": {"profiles": {"progress_markers": [1]}}}, "'progress_markers' must be"),
        (
            {"bookmarks": {"profiles": {"pass": {"segments": [{"session": "x"}]}}}},
            "unreadable pass",
        ),
    ],
)
def test_state_of_the_wrong_shape_is_a_warning_and_a_full_sync(
    tmp_path: Path, state: dict[str, t.Any], says: str
) -> None:
    done, fake = sync(tmp_path, state)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert any(says in line for line in warnings(done.stderr)), done.stderr[-3000:]
    assert [r["distinct_id"] for r in records(done)] == fake.expected_ids()
    assert "where" not in fake.requests_for(0)[0].form, "a full sync has no $last_seen filter"
    final = json.loads(done.stdout.splitlines()[-1])["value"]["bookmarks"]["profiles"]
    assert final["replication_key_value"], "the run ends with a good bookmark"


def test_a_bookmark_that_is_no_date_is_named_and_the_sync_is_full(tmp_path: Path) -> None:
    bad = {"replication_key": "last_seen", "replication_key_value": "2024-13-45T99:00:00"}
    done, fake = sync(tmp_path, {"bookmarks": {"profiles": bad}})
    assert done.returncode == 0, done.stderr[-3000:]
    (warning,) = [w for w in warnings(done.stderr) if "bookmark" in w]
    assert "'2024-13-45T99:00:00'" in warning and "reading every profile" in warning
    assert len(records(done)) == PROFILES
    assert "where" not in fake.requests_for(0)[0].form

    good = {**bad, "replication_key_value": "2024-06-01T00:00:00+00:00"}
    done, fake = sync(tmp_path, {"bookmarks": {"profiles": good}})
    assert done.returncode == 0 and not [w for w in warnings(done.stderr) if "bookmark" in w]
    where = fake.requests_for(0)[0].form["where"]
    assert where == 'properties["$last_seen"] >= "2024-06-01T00:00:00"'


# ------------------------------------------------------------- capabilities the tap does not offer
@pytest.mark.parametrize(
    ("setting", "value", "capability"),
    [
        ("flattening_enabled", True, "schema-flattening"),
        ("flattening_enabled", "false", "schema-flattening"),  # the SDK would act on this string
        (
            "batch_config",
            {"encoding": {"format": "jsonl"}, "storage": {"root": "file://x"}},
            "batch",
        ),
        ("emit_activate_version_messages", True, "activate-version"),
    ],
)
def test_settings_of_unoffered_capabilities_are_refused(
    tmp_path: Path, setting: str, value: t.Any, capability: str
) -> None:
    done, fake = sync(tmp_path, None, **{setting: value})
    assert_one_line_exit_3(done, f"Setting '{setting}' is not supported", capability)
    assert fake.requests == [], "refused before any request"


def test_flattening_disabled_is_accepted(tmp_path: Path) -> None:
    done, _ = sync(tmp_path, None, flattening_enabled=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(records(done)) == PROFILES
    assert all(set(r) == {"distinct_id", "last_seen", "properties"} for r in records(done))


def test_about_advertises_only_what_holds(tmp_path: Path) -> None:
    done = run(tmp_path, "--about", "--format", "json")
    assert done.returncode == 0, done.stderr
    about = json.loads(done.stdout)
    assert about["capabilities"] == [c.value for c in CAPABILITIES]
    offered = set(about["settings"]["properties"])
    assert not {s for s in offered if s.startswith(("flattening", "batch", "emit_activate"))}
    assert {"stream_maps", "stream_map_config", "project_id"} <= offered


def test_the_sdks_own_options_still_exit_0(tmp_path: Path) -> None:
    config = write(tmp_path, "tap.json", json.dumps(base_config()))
    for args in (["--version"], ["--help"], ["--config", config, "--discover"]):
        done = run(tmp_path, *args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert done.stdout.strip(), args
    catalog = json.loads(run(tmp_path, "--config", config, "--discover").stdout)
    assert {s["tap_stream_id"] for s in catalog["streams"]} >= {"profiles", "events"}


def test_structured_logging_holds_one_json_object_per_line_without_secrets(
    tmp_path: Path,
) -> None:
    """`structured-logging` stays advertised: with the logging config Meltano passes SDK taps
    (SINGER_SDK_LOG_CONFIG, StructuredFormatter) every stderr line is one JSON object, the
    SUMMARY included, and a failure's line carries no secret."""
    log_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "singer_sdk.logging.StructuredFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "structured",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "INFO", "handlers": ["console"]},
    }
    logs = json.dumps(log_config)
    fake = EngageFake(PROFILES)
    fake.fail_always(0, Reply(401, {"error": f"Invalid secret {SA_SECRET}"}))
    with serve_http(fake) as url:
        config = write(tmp_path, "tap.json", json.dumps(base_config(api_url=url)))
        done = subprocess.run(
            [TAP, "--config", config],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "SINGER_SDK_LOG_CONFIG": write(tmp_path, "log.json", logs)},
        )
    assert done.returncode == EXIT_AUTH, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert any(line.get("type") == "SUMMARY" for line in lines)
    failures = [line for line in lines if line.get("level") == "error"]
    assert failures and all("401" in json.dumps(line) for line in failures[-1:]), lines[-3:]
    assert SA_SECRET not in done.stderr
