"""Starting real local processes for the end-to-end tests and the benchmarks."""
