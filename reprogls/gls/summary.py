"""The fit summary: one table model, rendered as text, HTML or LaTeX.

:class:`Summary` is a ``str`` (the text rendering), so ``print(res.summary())`` and string
searches work as before, and it carries ``as_text()``, ``as_html()`` and ``as_latex()``
like a statsmodels summary (plus ``_repr_html_`` for notebooks).
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["EquationTable", "Summary"]

TITLE = "Low-rank GLS / SUR results"
COLUMNS = ("coef", "std err", "z", "P>|z|", "[0.025", "0.975]")
_WIDTH = 78
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                  "|": r"\textbar{}"}


@dataclass(frozen=True)
class EquationTable:
    """One equation's coefficient rows: ``(regressor, coef, se, z, p, lo, hi)``; its R^2,
    uncentred (and labelled so, as statsmodels does) where it has no intercept."""

    name: str
    rsquared: float
    rows: list[tuple[str, float, float, float, float, float, float]]
    centred: bool = True

    @property
    def rsquared_label(self) -> str:
        return "R-squared" if self.centred else "R-squared (uncentred)"


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


class Summary(str):
    """Text summary (the ``str`` value) with HTML and LaTeX renderings of the same tables.

    Parameters
    ----------
    header : list of (label, value) pairs
    equations : list of EquationTable
    """

    header: list[tuple[str, str]]
    equations: list[EquationTable]

    def __new__(cls, header: list[tuple[str, str]], equations: list[EquationTable]):
        obj = super().__new__(cls, _render_text(header, equations))
        obj.header = header
        obj.equations = equations
        return obj

    def as_text(self) -> str:
        return str.__str__(self)

    def as_html(self) -> str:
        """HTML: a header table and one coefficient table per equation (names escaped)."""
        out = [f"<table class=\"reprogls-summary\"><caption>{TITLE}</caption>"]
        for label, value in self.header:
            out.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>")
        out.append("</table>")
        for eq in self.equations:
            out.append(f"<table class=\"reprogls-equation\"><caption>Equation: "
                       f"{html.escape(eq.name)} ({eq.rsquared_label} {eq.rsquared:.4f})</caption>")
            out.append("<tr><th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
                       + "</tr>")
            for name, *values in eq.rows:
                cells = "".join(f"<td>{_markup_number(v)}</td>" for v in values)
                out.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
            out.append("</table>")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        return self.as_html()

    def as_latex(self) -> str:
        """LaTeX: one ``tabular`` for the header and one per equation (names escaped)."""
        out = [r"\begin{center}", rf"\textbf{{{TITLE}}}\\[4pt]", r"\begin{tabular}{ll}",
               r"\hline"]
        for label, value in self.header:
            out.append(rf"{_latex(label)} & {_latex(value)} \\")
        out += [r"\hline", r"\end{tabular}"]
        for eq in self.equations:
            out += [r"\\[6pt]", rf"Equation: {_latex(eq.name)} "
                    rf"($R^2{'' if eq.centred else '_u'} = {eq.rsquared:.4f}$)\\",
                    r"\begin{tabular}{l" + "r" * 6 + "}",
                    r"\hline", " & " + " & ".join(_latex(c) for c in COLUMNS) + r" \\",
                    r"\hline"]
            for name, *values in eq.rows:
                out.append(_latex(name) + " & " + " & ".join(_markup_number(v)
                                                             for v in values) + r" \\")
            out += [r"\hline", r"\end{tabular}"]
        out.append(r"\end{center}")
        return "\n".join(out)


#: Coefficient table: (heading, width, decimals) per number column, as statsmodels'.
_NUMBER_COLUMNS = tuple(zip(COLUMNS, (12, 12, 9, 9, 10, 10), (4, 4, 3, 3, 3, 3),
                            strict=True))
#: The narrowest regressor-name column (wider when a name needs it: names are not cut).
_NAME_WIDTH = 16


def _cell(value: float, width: int, decimals: int) -> str:
    """``value`` right-aligned in ``width`` characters, at least one of them a leading
    space: fixed-point with ``decimals`` digits when that fits, else scientific with as
    many significant digits as fit (so a huge z-value such as 16830876.411 cannot run
    into the next column)."""
    text = f"{value:.{decimals}f}"
    digits = decimals
    while len(text) > width - 1 and digits >= 0:
        text = f"{value:.{digits}e}"
        digits -= 1
    return text.rjust(width)


def _markup_number(value: float) -> str:
    """An HTML/LaTeX cell: 4 decimals, scientific beyond 14 characters (``1e300`` would
    otherwise print 300 digits)."""
    return _cell(value, 15, 4).strip()


def _render_text(header: list[tuple[str, str]], equations: list[EquationTable]) -> str:
    name_width = max([_NAME_WIDTH, *(len(name) + 1 for eq in equations
                                     for name, *_ in eq.rows)])
    width = max(_WIDTH, name_width + sum(w for _, w, _ in _NUMBER_COLUMNS))
    lines = [TITLE.center(width).rstrip(), "=" * width]
    cells = [f"{label}: {value}" for label, value in header]
    for start in range(0, len(cells), 2):
        lines.append("  ".join(f"{c:<38}" for c in cells[start:start + 2]).rstrip())
    lines.append("=" * width)
    for eq in equations:
        lines.append(f"Equation: {eq.name}   {eq.rsquared_label}: {eq.rsquared:.4f}")
        lines.append(" " * name_width + "".join(f"{heading:>{w}}"
                                                for heading, w, _ in _NUMBER_COLUMNS))
        for name, *values in eq.rows:
            lines.append(f"{name:<{name_width}}" + "".join(
                _cell(v, w, decimals)
                for v, (_, w, decimals) in zip(values, _NUMBER_COLUMNS, strict=True)))
        lines.append("-" * width)
    return "\n".join(lines)
