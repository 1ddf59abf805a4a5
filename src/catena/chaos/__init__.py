"""`catena chaos`: a local cluster under a seeded fault schedule, a concurrent workload whose
history is recorded, and a verdict: per-key linearizability, lost acknowledged writes and
duplicated increments. See `catena chaos --help` and the README's Reliability section."""
