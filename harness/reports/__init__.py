"""Generators of the repository's figures and samples: docs/RELIABILITY.md, README quotes, events/donor."""
