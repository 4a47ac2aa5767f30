"""tap-mixpanel-profiles: a Singer tap for Mixpanel (profiles, group profiles, cohorts, events)."""
