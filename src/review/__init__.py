"""Human review of flagged sessions: queue, terminal review, review page."""
