# ruff: noqa: RUF001, RUF003  (Greek letters and math symbols are the point of this module)
"""LaTeX leftovers in abstracts (`modeling~(MLM)`, `$\\alpha$`, `\\textbf{x}`, `30\\%`) as plain text.

arXiv abstracts are written in LaTeX and the APIs pass the source through. The stored abstract keeps the
original; `latex_to_text` makes the copy that pages and emails show (`Paper.abstract_clean`). It is a
reading aid, not a TeX engine: it knows the markup that shows up in abstracts and leaves anything it
does not recognise readable (an unknown `\\macro` loses its backslash, unbalanced `$` stays).
"""

from __future__ import annotations

import re
import unicodedata

SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ",
    "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Pi": "Π", "Sigma": "Σ",
    "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "times": "×", "cdot": "·", "pm": "±", "mp": "∓", "leq": "≤",
    "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "sim": "~", "simeq": "≃",
    "propto": "∝", "infty": "∞", "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒",
    "leftrightarrow": "↔", "in": "∈", "notin": "∉", "subset": "⊂", "subseteq": "⊆", "cup": "∪",
    "cap": "∩", "forall": "∀", "exists": "∃", "partial": "∂", "nabla": "∇", "sum": "Σ", "prod": "Π",
    "int": "∫", "sqrt": "√", "ell": "ℓ", "ldots": "…", "dots": "…", "cdots": "⋯", "circ": "∘",
    "log": "log", "exp": "exp", "max": "max", "min": "min", "arg": "arg", "sin": "sin", "cos": "cos",
    "LaTeX": "LaTeX", "TeX": "TeX", "textasciitilde": "~", "S": "§", "dag": "†", "ddag": "‡",
}  # fmt: skip
# Commands whose argument is the text to show.
UNWRAP = (
    "textbf|textit|emph|texttt|textsc|textsf|textrm|textup|textnormal|underline|mbox|text|mathrm|mathbf"
    "|mathit|mathsf|mathtt|mathcal|mathbb|mathfrak|boldsymbol|bm|operatorname|url|textsuperscript"
    "|textsubscript|hat|bar|tilde|vec|widehat|widetilde|overline"
)
# Commands whose argument is not text for a reader (references, labels, footnotes).
DROP = "cite|citep|citet|citealp|citeauthor|ref|eqref|autoref|cref|Cref|label|footnote|vspace|hspace"
ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303", "=": "\u0304",
           ".": "\u0307", "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b"}  # fmt: skip

_ARG = r"\{((?:[^{}]|\{[^{}]*\})*)\}"  # one argument, allowing one level of nested braces
_DROP_RE = re.compile(rf"[\s~]*\\(?:{DROP})\*?(?:\[[^\]]*\])*{_ARG}")
_HREF_RE = re.compile(rf"\\href{_ARG}{_ARG}")
_UNWRAP_RE = re.compile(rf"\\(?:{UNWRAP})\*?\s*{_ARG}")
_BRACED_STYLE_RE = re.compile(r"\{\\(?:bf|it|em|tt|sc|sf|rm)\s+([^{}]*)\}")
_ACCENT_RE = re.compile(r"\{?\\([`'\"^~=.]|[cvuH](?=[\s{]))\s*\{?([A-Za-z])\}?\}?")
# $...$ as pandoc reads it: no space inside either dollar, so "costs $5 or $10" stays text.
_INLINE_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\\\((.+?)\\\)|(?<![\\$])\$(?=\S)([^$]+?)(?<=[^\s\\])\$(?=(\d?))")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+)(?:\{\})?")  # `\LaTeX{}`: the empty group ends the name
_TIE_RE = re.compile(r"(?<=[^\s/])~(?=\S)")  # `word~(MLM)`; not `~10%` (about) or `/~user` (a path)
_ESCAPED_RE = re.compile(r"\\([%&_#${}])")
_SPACES_RE = re.compile(r"[ \t]{2,}")


def _math(content: str) -> str:
    """The inside of $...$: symbols as Unicode, markup and braces dropped, spaces as TeX would set them."""
    content = _UNWRAP_RE.sub(r"\1", content)
    content = _COMMAND_RE.sub(_math_command, content)
    content = re.sub(r"\\[,;:! ]", " ", content)  # spacing commands
    content = content.replace("{", "").replace("}", "")
    content = re.sub(r"\s*([=<>≤≥≠≈≃∈∉⊂⊆→←⇒↔∝~])\s*", r" \1 ", content)  # relations: spaced
    content = re.sub(r"\s*([×·])\s*", r"\1", content)  # products: tight, as in "2×" and "3×3"
    return re.sub(r"\s+", " ", content).strip()


def _inline_math(match: re.Match) -> str:
    content = match.group(1) or match.group(2) or match.group(3)
    if match.group(4) and "\\" not in content:
        return match.group(0)  # "$5-$10": a digit right after the closing dollar means money, not math
    return _math(content)


def _math_command(match: re.Match) -> str:
    symbol = SYMBOLS.get(match.group(1), match.group(1))
    return f" {symbol} " if symbol.isalpha() and len(symbol) > 1 else symbol  # n\log n: "n log n"


def _command(match: re.Match) -> str:
    return SYMBOLS.get(match.group(1), match.group(1))


def _accent(match: re.Match) -> str:
    return unicodedata.normalize("NFC", match.group(2) + ACCENTS[match.group(1)])


def latex_to_text(text: str) -> str:
    if "\\" not in text and "$" not in text and "~" not in text and "``" not in text:
        return text  # most abstracts: nothing to do
    text = text.replace("\\\\", " ")  # forced line break
    text = _DROP_RE.sub("", text)
    text = _ACCENT_RE.sub(_accent, text)
    text = _INLINE_MATH_RE.sub(_inline_math, text)
    text = _HREF_RE.sub(r"\2", text)
    for _ in range(2):  # \textbf{\emph{x}}
        text = _UNWRAP_RE.sub(r"\1", text)
    text = _BRACED_STYLE_RE.sub(r"\1", text)
    text = _TIE_RE.sub(" ", text)
    text = _ESCAPED_RE.sub(r"\1", text)
    text = _COMMAND_RE.sub(_command, text)
    text = re.sub(r"``(.+?)''", r"“\1”", text)
    text = re.sub(r"(?<=\s)---(?=\s)", "—", text)
    text = re.sub(r"(?<=[\s\d])--(?=[\s\d])", "–", text)
    return _SPACES_RE.sub(" ", text).strip()
