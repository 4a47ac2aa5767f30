"""What every stream shares, independent of Mixpanel's domains.

The limiter and its quota ledger, the HTTP client, the partitioned fetcher, progress and
the SUMMARY line, the record writer, and the one stream lifecycle (`lifecycle.StreamSync`).
It imports neither `profiles` nor `events` (tests/test_architecture.py checks it).
"""
