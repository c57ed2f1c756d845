"""`make bench`: the benchmark, its measurement hooks and its report."""
