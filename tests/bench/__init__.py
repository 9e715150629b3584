"""Benchmarks (``make bench``): each module's ``run()`` prints its figures as ratios to a baseline."""
