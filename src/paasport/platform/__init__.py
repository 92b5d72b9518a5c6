"""The composition root: builds engine, registry, event log, health monitor, the one desired-state
store, drainer, agent, monitor, refresher and sinks from the SystemConfig (``build``), and the
one-reconciler-per-state-dir lock (``lock``). The CLI verbs (up, deployd, agent, monitor) call it.
"""
