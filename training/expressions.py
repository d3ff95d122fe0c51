"""The expressions a spec writes for its derived columns and its row filter: pandas'
``DataFrame.eval`` over the data's columns, limited to what pandas evaluates, checked when the
spec loads so that a mistake is named there, not deep inside pandas."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from training.errors import SpecError

# What a derivation or the row filter may call: pandas' eval functions, evaluated with the
# python engine (numpy) whether or not numexpr is installed, so the bytes do not depend on it.
DERIVE_FUNCTIONS = ("abs", "sqrt", "exp", "expm1", "log", "log1p", "log10", "floor", "ceil",
                    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh",
                    "tanh", "arcsinh", "arccosh", "arctanh")  # fmt: skip
EVAL_ENGINE = "python"
_BACKTICKED = re.compile(r"`([^`]*)`")
_ASSIGNMENT = re.compile(r"(?<![=!<>])=(?!=)")  # `ph = 7` where `ph == 7` was meant
# Python syntax that pandas' eval does not evaluate; it would fail deep inside pandas
# (`'PandasExprVisitor' object has no attribute 'visit_RShift'`), so the spec is refused as it
# loads instead, naming what to write.
_NOT_EVALUATED: dict[type, str] = {
    ast.RShift: ">>", ast.LShift: "<<", ast.BitXor: "^", ast.MatMult: "@", ast.Is: "is",
    ast.IsNot: "is not", ast.IfExp: "... if ... else ...", ast.Lambda: "lambda",
    ast.Dict: "{...}", ast.Set: "{...}", ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension", ast.NamedExpr: ":=", ast.Starred: "*",
}  # fmt: skip
OPERATORS = "< <= > >= == != in, and or not (or & | ~), + - * / ** // %"


@dataclass(frozen=True)
class Expression:
    """A pandas ``DataFrame.eval`` expression and the columns it reads, checked for syntax and
    for calls outside ``DERIVE_FUNCTIONS`` when the spec loads."""

    text: str
    columns: frozenset[str]

    @classmethod
    def parse(cls, text: str, what: str) -> Expression:
        """``text`` checked as the spec loads; ``what`` names it in messages.

        Raises:
            SpecError: not a non-empty string, a syntax error, syntax or a call that pandas'
                eval does not evaluate.
        """
        if not isinstance(text, str) or not text.strip():
            raise SpecError(f"{what} must be a non-empty string")
        # `a column` is pandas' quoting for names that are not identifiers.
        quoted: dict[str, str] = {}

        def placeholder(match: re.Match[str]) -> str:
            quoted[f"_q{len(quoted)}_"] = match.group(1)
            return f"_q{len(quoted) - 1}_"

        try:
            tree = ast.parse(_BACKTICKED.sub(placeholder, text).strip(), mode="eval")
        except SyntaxError as exc:
            hint = " (to compare, write ==)" if _ASSIGNMENT.search(text) else ""
            raise SpecError(f"{what} cannot be evaluated: {exc.msg}{hint}") from None
        for node in ast.walk(tree):
            ops = [node.op] if isinstance(node, ast.BinOp) else getattr(node, "ops", [node])
            symbol = next((_NOT_EVALUATED[type(op)] for op in ops
                           if type(op) in _NOT_EVALUATED), None)  # fmt: skip
            if symbol is not None:
                raise SpecError(f"{what} uses {symbol!r}, which a derivation or filter cannot: "
                                f"it may use {OPERATORS} and the functions "
                                f"{', '.join(DERIVE_FUNCTIONS)}")  # fmt: skip
        called = {n.func for n in ast.walk(tree) if isinstance(n, ast.Call)}
        unknown = sorted(
            f.id for f in called if isinstance(f, ast.Name) and f.id not in DERIVE_FUNCTIONS
        )
        if unknown:
            raise SpecError(f"{what}: unknown function {unknown[0]!r}; a derivation or filter "
                            f"may call {', '.join(DERIVE_FUNCTIONS)}")  # fmt: skip
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n not in called}
        return cls(text, frozenset(quoted.get(n, n) for n in names))
