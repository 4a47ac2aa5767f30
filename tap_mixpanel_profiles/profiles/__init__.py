"""The Engage domain: user profiles, group profiles, cohorts and cohort membership.

Engage requests and the streamed page parser, `where` helpers, the resumable pass, the
profiles sync, and the streams built on it. Never imports `events`.
"""
