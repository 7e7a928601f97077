"""What operators of the operator see: Prometheus metrics computed at scrape time, who
may read them, readiness, and TLS contexts that follow their certificates' renewal.

May import: ``core``, ``api``.
"""
