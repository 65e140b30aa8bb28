"""Workflows of runs: the stages `mome demo` and `mome reproduce` share (`pipeline`), the demo and its report,
and the paper reproduction with its plan and report."""
