"""Data shipped with arrcoc (the demo dialogue)."""
