"""Adapters: one module per outside system, each turning its SDK's errors into the project's exceptions."""
