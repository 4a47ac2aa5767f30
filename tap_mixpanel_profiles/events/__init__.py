"""The raw Export API domain: date chunks, streamed export lines, the events sync and stream.

Never imports `profiles`.
"""
