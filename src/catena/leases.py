"""Read leases (DESIGN.md section 8): how long a member may answer reads from its own data after
a coordinator's probe granted it a lease. The member (chain/replica.py) holds leases this long;
the coordinator (coordinator/machine.py) counts on them running out by then. Monotonic time."""

LEASE_S = 1.0
