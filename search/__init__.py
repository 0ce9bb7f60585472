"""Co-design search (Ray Tune), Pareto fronts and plots."""
