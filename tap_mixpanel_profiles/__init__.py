"""tap-mixpanel-profiles: a Singer tap for Mixpanel user profiles."""
