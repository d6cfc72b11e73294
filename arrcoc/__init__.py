"""arrcoc: ARR-COC relevance allocation for dialogue tokens, grounded in imagined futures."""
