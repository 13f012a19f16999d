"""Reporting results: the console overview, the cross-version report (Markdown, HTML, heat map),
diagnostics of drifts, and bisecting a change between releases."""


def markdown_row(*cells) -> str:
    """One Markdown table row; a "|" inside a cell (as in "|Δ|") is escaped so it stays one cell."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
