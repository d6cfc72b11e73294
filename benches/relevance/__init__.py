"""The dialogue relevance benchmark (issue 6): `python -m benches.relevance [--quick]`."""
