"""Reporting results: the console overview, the cross-version report (Markdown, HTML, heat map),
diagnostics of drifts, and bisecting a change between releases."""


def markdown_text(text) -> str:
    """Text a golden's code may have written (a warning, an error message) as Markdown shows it
    literally: no HTML, links or images of its own making."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[") \
        .replace("]", "\\]")


def markdown_row(*cells) -> str:
    """One Markdown table row of literal text; a "|" inside a cell (as in "|Δ|") is escaped so it
    stays one cell."""
    return "| " + " | ".join(markdown_text(c).replace("|", "\\|") for c in cells) + " |"
