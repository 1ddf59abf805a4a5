"""Operability: Prometheus metrics read from each process's own state at scrape time, the few
event counters that cannot be read later, the coordinator's status page and its event ring,
and the small HTTP server that serves them (`--metrics-listen HOST:PORT`).

Modules: `buckets` (cheap histograms for the hot path), `member`, `coordinator`, `membership`
(one collector each), `events` (the coordinator's bounded event ring), `status_page` (the
coordinator's `/` and `/status.json`), `http` (the server).
"""
