"""Scheduled (recurring) donations: claim due schedules in MongoDB, charge them once per period via Stripe."""
