"""Tests of the Mixpanel simulator (tap_mixpanel_profiles.simulator), kept apart from the tap's."""
