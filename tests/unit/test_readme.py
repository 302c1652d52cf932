"""The README's configuration reference is generated from the settings class: keep them equal."""

from pathlib import Path

from dropzone.config.reference import render_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_matches_the_settings_class() -> None:
    text = README.read_text()
    start = text.index("<!-- config-reference:start -->\n") + len(
        "<!-- config-reference:start -->\n"
    )
    end = text.index("<!-- config-reference:end -->")
    assert text[start:end].strip() == render_reference("markdown").strip()


def test_readme_opens_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    assert len(block) == 2
    assert block[0].endswith("dropzone run --config config/local.toml")
    assert block[1].endswith(".venv/bin/pytest -q")
