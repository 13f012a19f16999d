"""Reporting results: the console overview, the cross-version report (Markdown, HTML, heat map),
diagnostics of drifts, and bisecting a change between releases."""
