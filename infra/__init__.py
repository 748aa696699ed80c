"""Shared infrastructure, the bottom floor: Redis clients and their breaker,
the database query watchdog, task publishing with a deadline and a fallback,
Prometheus metrics and pull counts, rate-limited logging, the pages' CSP,
the X-Served-By header, the clock, the loop thread every background loop
runs on, and the background jobs loop.

It imports nothing from ``danmaku``, ``moderation`` or ``danmaku_site``
(import-linter holds it to that); they hand it what it needs.
"""
