"""`sync-observer`: a terminal UI that watches a seasync (or seapig) cluster through any front.

It is an ordinary client: it consumes the router's introspection objects (``SeapigServer::Objects``,
``::Connections``, ``SeasyncServer::Statistics`` and ``SeasyncServer::Workers``; docs/INTROSPECTION.md) with ``common.client.Client`` and
shows them as live tables, plus any object you pick (Enter) as JSON with its last change highlighted.
The client reconnects by itself; the status line says when the data is stale.

Modules: ``format`` (the rendering rules, pure), ``widgets`` (``LiveTable``, ``ObjectDetail``,
``RatesView``), ``app`` (``ObserverApp``, which owns the client), ``cli`` (``sync-observer``);
the layout is observer.tcss.
"""

from __future__ import annotations

from scripts.observer.app import (
    CONNECTIONS, DEFAULT_URL, OBJECTS, STATISTICS, WATCHED, WORKERS, ObserverApp,
)
from scripts.observer.cli import main, observe
from scripts.observer.widgets import LiveTable, ObjectDetail, ObjectTable, RatesView

__all__ = [
    "CONNECTIONS", "DEFAULT_URL", "LiveTable", "OBJECTS", "ObjectDetail", "ObjectTable", "ObserverApp",
    "RatesView", "STATISTICS", "WATCHED", "WORKERS", "main", "observe",
]
