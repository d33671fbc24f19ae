"""A Sphinx extension of the book's API reference: ``|x|`` in a docstring is an absolute value or a set's size
(``|S|``, ``|θ|``, ``|change of the logit|``), not a reST substitution reference, so it is escaped before autodoc
parses the docstring (docutils would otherwise report "Undefined substitution referenced" for each). Text inside
``double backquotes`` and reST table cells are left alone. Loaded by _config.yml's ``local_extensions``."""
from __future__ import annotations

import re

#: What docutils reads as a substitution reference: |text| with no space just inside the bars.
#: (It may wrap onto the next line of its paragraph, as docutils joins them; a table cell, "| a |", has spaces.)
PIPES = re.compile(r"(?<![\\|\w])\|(?=[^\s|])((?:[^|`\n]|\n(?![ \t]*\n))*?[^\s|\\])\|(?![|\w])")
LITERAL = re.compile(r"(``.*?``)", re.S)


def escape_pipes(text: str) -> str:
    """``text`` with every ``|text|`` outside inline literals written ``\\|text\\|``."""
    parts = LITERAL.split(text)
    return "".join(part if i % 2 else PIPES.sub(r"\\|\1\\|", part) for i, part in enumerate(parts))


def _process(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = escape_pipes("\n".join(lines)).split("\n")


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
