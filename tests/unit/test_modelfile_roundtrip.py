"""Property: whatever request fields a Modelfile can express survive writing and reading back."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropzone.recipes import parameters as rules
from dropzone.recipes.modelfile import modelfile_fields, parse_modelfile, quote_value, to_modelfile

# Printable text plus tab, CR and LF (the parser drops every other control character), with
# quotes and whitespace over-represented: they are what quoting must get right.
_ALPHABET = st.one_of(
    st.sampled_from(['"', '"', " ", "\t", "\n", "\r", "#", "a"]),
    st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
)
texts = st.text(_ALPHABET, max_size=16)


def expressible(value: str) -> bool:
    try:
        quote_value(value)
    except ValueError:
        return False
    return True


values = texts.filter(expressible)
names = st.sampled_from(["llama3.2", "qwen3:8b", "user/model:tag", "./base.gguf", "sub/dir"])
float32s = st.floats(-1e6, 1e6, allow_nan=False, width=32).map(rules.float32)
int64s = st.integers(-(2**63), 2**63 - 1)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(sorted(rules.PARAMETERS)), unique=True, max_size=4))
    strategies = {
        rules.INT: int64s,
        rules.FLOAT: float32s,
        rules.BOOL: st.booleans(),
        rules.STRINGS: st.lists(values, min_size=1, max_size=3),
    }
    return {key: draw(strategies[rules.PARAMETERS[key]]) for key in chosen}


@st.composite
def request_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Fields in the normalised form ``modelfile_fields`` returns."""
    optional: dict[str, st.SearchStrategy[Any]] = {
        "from": st.lists(st.one_of(names, values.filter(bool)), min_size=1, max_size=2),
        "adapters": st.lists(values, min_size=1, max_size=1),
        "draft": st.lists(values, min_size=1, max_size=2),
        "template": values,
        "system": values,
        "license": st.lists(values, min_size=1, max_size=3),
        "parameters": parameters().filter(bool),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(rules.MESSAGE_ROLES), "content": values}
            ),
            min_size=1,
            max_size=3,
        ),
        "renderer": values,
        "parser": values,
        "requires": st.builds("{}.{}.{}".format, *[st.integers(0, 99)] * 3),
    }
    keys = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=6))
    return {key: draw(optional[key]) for key in keys}


def read_back(text: str) -> dict[str, Any]:
    found, _warnings = modelfile_fields(parse_modelfile(text, require_from=False))
    return found


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(request_fields())
def test_fields_survive_modelfile_and_back(fields: dict[str, Any]) -> None:
    assert read_back(to_modelfile(fields)) == fields


def commands(fields: dict[str, Any]) -> list[str]:
    """The Modelfile of ``fields`` as one text per instruction (a value may span lines)."""
    found = []
    for key, value in fields.items():
        singles: list[dict[str, Any]]
        if key == "parameters":
            singles = [
                {key: {name: [v] if isinstance(param, list) else v}}
                for name, param in value.items()
                for v in (param if isinstance(param, list) else [param])
            ]
        elif isinstance(value, list):
            singles = [{key: [v]} for v in value]
        else:
            singles = [{key: value}]
        found.extend(to_modelfile(single).removesuffix("\n") for single in singles)
    return found


@settings(
    max_examples=200, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(request_fields(), st.data())
def test_a_reformatted_modelfile_reads_the_same(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    """Modelfile → fields → Modelfile → fields, with the first Modelfile written differently:
    instruction names in any case, comments, blank lines, padding, CR, LF or CRLF line ends."""
    lines = []
    for command in commands(fields):
        name, _, rest = command.partition(" ")
        name = "".join(c.swapcase() if data.draw(st.booleans()) else c for c in name)
        # One separator only after PARAMETER and MESSAGE: a second would start the key.
        gap = (
            " "
            if name.upper() in ("PARAMETER", "MESSAGE")
            else data.draw(st.sampled_from([" ", "\t", "  "]))
        )
        lines.append(data.draw(st.sampled_from(["", " ", "\t"])) + name + gap + rest)
        if data.draw(st.integers(0, 4)) == 0:
            lines.append(data.draw(st.sampled_from(["# comment", "", "   # x", "\t"])))
    first = read_back(data.draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines))
    assert first == fields
    assert read_back(to_modelfile(first)) == first
