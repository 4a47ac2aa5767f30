"""Profiles sync with pages streamed in batches (pages larger than WHOLE_PAGE_BYTES)."""

from __future__ import annotations

import json
import logging
import typing as t

import pytest

from tap_mixpanel_profiles.profiles import engage as engage_module
from tap_mixpanel_profiles.profiles import pages
from tests.helpers.engage_fake import SESSION_ID, Reply
from tests.helpers.in_process import sync


@pytest.fixture
def small_stream_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream every page of more than 2 KB, in batches of about 1 KB."""
    monkeypatch.setattr(engage_module, "WHOLE_PAGE_BYTES", 2048)
    monkeypatch.setattr(engage_module, "READ_BYTES", 512)
    monkeypatch.setattr(pages, "BATCH_BYTES", 1024)


@pytest.mark.usefixtures("small_stream_threshold")
def test_streamed_pages_deliver_every_profile_in_order(
    engage: t.Callable[..., t.Any], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = engage(230)
    result = sync(capsys, page_size=50)
    assert result.error is None
    assert result.ids == fake.expected_ids()
    assert result.summary["successful_pages"] == 5
    assert result.summary["redelivered_rows"] == 0


@pytest.mark.usefixtures("small_stream_threshold")
def test_a_streamed_page_cut_short_is_retried_and_its_early_rows_come_again(
    engage: t.Callable[..., t.Any],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retry re-delivers what the failed attempt already emitted: harmless, and said.

    The target upserts on distinct_id, so a profile delivered twice is one row; a
    profile never delivered would be a loss. The log and the SUMMARY count them.
    """
    fake = engage(150)
    page1 = {
        "page": 1,
        "page_size": 50,
        "session_id": SESSION_ID,
        "status": "ok",
        "results": fake.profiles[50:100],
    }
    data = json.dumps(page1)
    fake.fail(1, Reply(200, data[: int(len(data) * 0.8)]))  # cut inside the results
    with caplog.at_level(logging.INFO):
        result = sync(capsys, page_size=50)
    assert result.error is None
    assert set(result.ids) == set(fake.expected_ids()), "nothing lost"
    again = result.summary["redelivered_rows"]
    assert 0 < again < 50
    assert len(result.ids) == 150 + again
    first_attempt = result.ids[50 : 50 + again]
    assert first_attempt == fake.expected_ids()[50 : 50 + again], "the early rows, once more"
    assert result.ids[50 + again :] == fake.expected_ids()[50:], "then the whole page, in order"
    assert any(
        "retry delivered" in r.getMessage() and str(again) in r.getMessage() for r in caplog.records
    )
    assert len(fake.requests_for(1)) == 2
    assert not any("profiles changed" in r.getMessage() for r in caplog.records)
