"""What the tests share besides fixtures: clocks, fakes, seeders and readers of what a run left behind."""
