"""The capabilities the tap advertises (`--about`, Meltano), and the settings it refuses.

The SDK's default Tap advertises more than this tap can honour. Each one it
drops is listed in `REFUSED` with the setting that would switch it on and why it
does not hold here; such a setting ends the run before any request with one
line and exit code 3, instead of a sync that silently loses data:

* schema-flattening: the profiles schema declares `properties` as an open
  object (Mixpanel properties are whatever the project sends), so the SDK's
  flattener has no children to flatten into columns: measured, every property
  vanished from DuckDB while the records carried `properties__*` keys no column
  took;
* batch: BATCH files are written after the stream's records, but this tap's
  STATE is written while they stream (a bookmark ahead of undelivered data),
  and target-duckdb rejects BATCH messages;
* activate-version: target-duckdb (both variants) only logs ACTIVATE_VERSION, so
  rows a full-table stream (cohorts) no longer serves would stay in DuckDB while the
  setting promised otherwise; the incremental streams never send it (docs/querying.md:
  'Deleted profiles', and for cohort membership its complete-snapshot markers).
"""

from __future__ import annotations

import typing as t

from singer_sdk.helpers.capabilities import (
    BATCH_CONFIG,
    FLATTENING_CONFIG,
    PluginCapabilities,
    TapCapabilities,
)

from tap_mixpanel_profiles.errors import ConfigError

if t.TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum

#: What the tap supports (also the `capabilities:` of meltano.yml and hub/, checked by tests).
CAPABILITIES: list[CapabilitiesEnum] = [
    TapCapabilities.CATALOG,
    TapCapabilities.STATE,
    TapCapabilities.DISCOVER,
    PluginCapabilities.ABOUT,
    PluginCapabilities.STREAM_MAPS,
    PluginCapabilities.STRUCTURED_LOGGING,
]

#: Setting that enables a capability the tap does not advertise -> (capability, why not).
REFUSED: dict[str, tuple[str, str]] = {
    "flattening_enabled": (
        "schema-flattening",
        "Mixpanel profile properties are open-ended, so flattening would drop every one of "
        "them; keep `properties` as one JSON column and add typed columns with stream_maps "
        "(docs/querying.md: 'Typed columns')",
    ),
    "batch_config": (
        "batch",
        "the tap writes RECORD messages only (its STATE follows the records it covers, and "
        "target-duckdb rejects BATCH messages); remove batch_config",
    ),
    "emit_activate_version_messages": (
        "activate-version",
        "target-duckdb only logs ACTIVATE_VERSION (rows of a full-table stream would stay), and "
        "the incremental streams never send it; find deleted profiles with a full refresh "
        "instead (docs/querying.md: 'Deleted profiles')",
    ),
}


#: Settings the SDK adds for the capabilities above that the tap does not offer: kept out of
#: `--about` (singer-sdk 0.54's Tap adds the flattening settings whatever `capabilities` says).
UNOFFERED_SETTINGS: tuple[str, ...] = (
    *FLATTENING_CONFIG["properties"],
    *BATCH_CONFIG["properties"],
    "emit_activate_version_messages",
)


def remove_unoffered_settings(config_jsonschema: dict[str, t.Any]) -> None:
    """Drop the settings of capabilities the tap does not offer from a config JSON schema."""
    for name in UNOFFERED_SETTINGS:
        config_jsonschema.get("properties", {}).pop(name, None)


def refuse_unsupported(config: t.Mapping[str, t.Any]) -> None:
    """Raise ConfigError for the first setting that switches on an unsupported capability.

    Truthiness as the SDK tests it (`if config.get(...)`): any value the SDK would act
    on is refused, `false`, null and empty values are accepted.
    """
    for name, (capability, why) in REFUSED.items():
        if config.get(name):
            raise ConfigError(
                f"Setting '{name}' is not supported (the tap does not offer {capability}): {why}."
            )
