"""Drift check, continuous training, gated promotion, rollback and daily stats reports.

`botclick drift-check` compares recent sessions with the champion's training sessions,
and with `--retrain` retrains and promotes a challenger only through the gate in
`gate.py`. docs/monitoring.md describes the flow, the exit codes and the report layout.
"""
