"""Records the router publishes for devices that cannot: ServiceAnnouncements, lease names.

The ServiceAnnouncement resource is :mod:`bridge.policy.announcement` (loaded with the policies);
:mod:`.records` is the pure step from announcements and leases to responder registrations and DNS
records, :mod:`.service` the shell that drives the responder and pins the records in the store.
"""
