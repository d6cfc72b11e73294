"""arrcoc: ARR-COC relevance allocation for dialogue tokens, grounded in imagined futures."""

from arrcoc.compress import compress, score

__all__ = ["compress", "score"]
