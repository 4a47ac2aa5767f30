"""The base of every stream of this tap: an SDK `Stream` whose records come from the engine.

The SDK owns what it is good at: the catalog, schema and record messages, STATE
plumbing, selection and stream maps. A stream here adds only its sync
(`new_sync`, a `StreamSync`), which runs as the body of `get_records` on the
one thread that writes Singer messages, while the fetcher's workers do the HTTP.
"""

from __future__ import annotations

import abc
import typing as t

from typing_extensions import override

from tap_mixpanel_profiles.engine.records import BufferedMsgSpecWriter, FastRecordsStream

if t.TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_profiles.engine.lifecycle import StreamSync
    from tap_mixpanel_profiles.engine.runtime import Runtime

S = t.TypeVar("S")
S_co = t.TypeVar("S_co", covariant=True)


class StreamOwner(t.Protocol[S_co]):
    """What a stream needs from the tap that created it."""

    @property
    def runtime(self) -> Runtime[t.Any]: ...
    @property
    def settings(self) -> S_co: ...
    @property
    def state_writer(self) -> t.Any: ...
    @property
    def message_writer(self) -> t.Any: ...


class EngineStream(FastRecordsStream, t.Generic[S]):
    """A stream that syncs through the shared engine and owns its bookmark.

    Settings are read lazily (`settings`), so that discovery works with an
    incomplete config; `check_settings` is the pre-flight check the tap runs for
    every selected stream before any stream syncs.
    """

    def __init__(self, tap: Tap, schema: dict[str, t.Any] | None = None) -> None:
        super().__init__(tap, schema=schema)
        self.owner = t.cast("StreamOwner[S]", tap)

    @property
    def settings(self) -> S:
        """The tap's validated settings."""
        return self.owner.settings

    @property
    def runtime(self) -> Runtime[t.Any]:
        """What this run's streams share (cancel event, limiters, outcome)."""
        return self.owner.runtime

    @override
    def fast_writer(self) -> BufferedMsgSpecWriter | None:
        writer = self.owner.message_writer
        return writer if isinstance(writer, BufferedMsgSpecWriter) else None

    def check_settings(self) -> None:
        """Fail fast (before any stream syncs) on settings this stream cannot run without."""

    @abc.abstractmethod
    def new_sync(self) -> StreamSync:
        """This run's sync of the stream."""

    @override
    def get_records(self, context: t.Mapping[str, t.Any] | None) -> t.Iterable[dict[str, t.Any]]:
        """The stream's records, in order, from its sync (under the record loop's GC policy).

        The sync hands over batches; each batch's records share one extraction time.
        """
        with self.gc_policy():
            for batch in self.new_sync().run():
                self.new_batch()
                yield from batch

    def emit_state(self) -> None:
        """Write a STATE message now (the stream's bookmark as it stands)."""
        _ = self.stream_state  # the stream's entry exists before it is written
        self.owner.state_writer.write_state(self.tap_state)
        # Written: the SDK's own end-of-stream STATE would only repeat it.
        self.state_manager.is_flushed = True

    def report_outcome(
        self, status: str, failed: list[t.Any], error: BaseException | None = None
    ) -> None:
        """Tell the run how this stream ended (it decides the exit code at the end)."""
        self.runtime.outcome.record(self.name, status, failed, error)
