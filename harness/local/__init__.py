"""Local services the job talks to on this machine, the demo that runs it, and its sample data."""
