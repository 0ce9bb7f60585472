"""Griffe extension: Sphinx roles in the docstrings (``:func:`~codesign.x.f```) shown as code.

codesign's docstrings cross-reference with Sphinx roles; mkdocstrings renders Markdown, where a
role would show up literally. ``:role:`path``` becomes `` `path` ``, and ``:role:`~path``` the last
component only, as Sphinx prints it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.on_object(obj=pkg)  # the package itself is not among the objects on_object sees
