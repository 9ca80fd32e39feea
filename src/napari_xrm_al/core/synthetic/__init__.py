"""The synthetic HBM micro-bump sample: parameters, geometry, imaging."""
