"""README.md stays true and short: its set-up commands are the ones CI runs, and every page it links exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci_command = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv"))
    assert ci_command in README.splitlines(), "README's test command and .ci/run's differ"
    main_job = ci_command.replace('".[dev]" && pytest', '".[embedded]" && genrec run')
    assert main_job in README.splitlines(), "README's main-job command is not the test command's install + genrec run"


def test_readme_links_exist_and_it_stays_short() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links, "README links to its docs"
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"
    assert len(README.splitlines()) <= 120, "README.md grew past 120 lines: move the detail into docs/"


def test_docs_index_lists_every_reference_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md") if path.name != "index.md")
    unlisted = [page for page in pages if f"]({page})" not in index]
    assert not unlisted, f"docs/index.md does not list {unlisted}"
