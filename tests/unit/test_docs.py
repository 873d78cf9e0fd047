"""The docs stay honest where that is cheap to check: every `mr` command and option they name
exists, the exit-code table is the error classes' codes, every vendored patch has its entry,
links resolve, bench commands parse, and the pages stay the size their readers can take."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import mr
from mr.cli import COMMANDS, cli
from mr.errors import MrError

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BENCH_README = ROOT / "bench" / "README.md"
PATCHES = ROOT / "vendor" / "patches"
USER_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
ALL_DOCS = [*USER_DOCS, BENCH_README, PATCHES / "README.md"]
SPAN = re.compile(r"(?<!`)`([^`\n][^`]*?)`(?!`)")  # inline code, which may wrap a line
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.M | re.S)


def _text_outside_fences(text: str) -> str:
    return FENCE.sub("", text)


def _spans(path: Path) -> list[str]:
    return [" ".join(s.split()) for s in SPAN.findall(_text_outside_fences(path.read_text()))]


def _fenced_lines(path: Path) -> Iterator[str]:
    for block in FENCE.findall(path.read_text()):
        for line in block.splitlines():
            yield line.split(" #", 1)[0].strip().removeprefix("$ ")


def _mr_invocations(path: Path) -> Iterator[list[str]]:
    """`mr ...` as written in inline code and in shell blocks (after pipes and VAR=value)."""
    pieces = [s for s in _spans(path)]
    for line in _fenced_lines(path):
        pieces += re.split(r"\|(?!\|)|&&|;", line)
    for piece in pieces:
        words = piece.replace("\\|", "|").split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if len(words) >= 2 and words[0] == "mr" and re.fullmatch(r"-{1,2}[a-z][a-z-]*|[a-z]+", words[1]):
            yield words


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return names


def _command(verb: str) -> click.Command | None:
    return cli.get_command(click.Context(cli), verb)


def _flag(word: str) -> str | None:
    """`--mode` of `[--mode`, `--ctx-size=N`, `--keep-alive]`; None for anything else."""
    word = word.strip("[](),.:")
    match = re.fullmatch(r"(--?[a-z][a-z-]*)(=.*)?", word)
    return match.group(1) if match else None


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_every_mr_command_and_option_named_exists(path: Path) -> None:
    group = _options(cli)
    seen = 0
    for words in _mr_invocations(path):
        flags = [f for f in (_flag(w) for w in words[1:]) if f]
        verb = words[1]
        if verb.startswith("-"):  # `mr --version`, `mr --ca-cert F run ...`
            assert verb in group | {"--version"}, f"{path.name}: `{' '.join(words)}`"
            continue
        assert verb in COMMANDS, f"{path.name}: no `mr {verb}` command"
        command = _command(verb)
        assert command is not None
        unknown = [f for f in flags if f not in _options(command) | group]
        assert not unknown, f"{path.name}: `mr {verb}` has no {unknown}"
        seen += 1
    assert seen or path != README


def test_every_flag_the_readme_names_belongs_to_a_command() -> None:
    known = _options(cli) | {"--version"}
    for verb in COMMANDS:
        command = _command(verb)
        assert command is not None
        known |= _options(command)
    for path in USER_DOCS:
        flags = {f for span in _spans(path) if (f := _flag(span.split()[0])) and f.startswith("--")}
        assert not flags - known, f"{path.name} names options no command has: {sorted(flags - known)}"


def _exit_codes_in_readme() -> set[int]:
    text = README.read_text()
    table = text[text.index("| exit | meaning |"):]
    rows = re.findall(r"^\| (\d+) \|", table.split("\n\n", 1)[0], re.M)
    return {int(code) for code in rows}


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_exit_code_table_is_the_error_classes_codes() -> None:
    for module in pkgutil.walk_packages(mr.__path__, "mr."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)  # every MrError subclass is defined
    codes = {MrError.exit_code} | {cls.exit_code for cls in _subclasses(MrError)}
    assert _exit_codes_in_readme() == codes | {130}  # 130: interrupted (Ctrl+C), not a class


def test_every_vendored_patch_has_its_entry() -> None:
    files = {p.name for p in PATCHES.glob("*.patch")}
    entries = set(re.findall(r"^## (\S+\.patch)$", (PATCHES / "README.md").read_text(), re.M))
    assert entries == files


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", _text_outside_fences(path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", _text_outside_fences(linked.read_text()), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: {target}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    text = README.read_text()
    after = text[text.index("One command runs the whole test suite"):]
    command = FENCE.search(after)
    assert command is not None
    assert f"exec {command.group(1).strip()}" in (ROOT / ".ci" / "run").read_text()


def test_bench_commands_in_the_docs_parse() -> None:
    from bench.__main__ import PART_NAMES, parse

    for path in [*USER_DOCS, BENCH_README]:
        for span in [*_spans(path), *_fenced_lines(path)]:
            if not span.startswith("python -m bench"):
                continue
            words = shlex.split(span)
            if words[2] == "bench":
                parse(words[3:])  # exits (SystemExit) on an unknown part or option
            else:
                assert importlib.util.find_spec(words[2]) is not None, span
    bench_spans = set(_spans(BENCH_README))
    assert set(PART_NAMES) <= bench_spans, "bench/README.md lists every part"


def test_bench_readme_flags_exist(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import parse

    with pytest.raises(SystemExit):
        parse(["--help"])
    parser_flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    mr_flags = set().union(*(_options(c) for v in COMMANDS if (c := _command(v))))
    flags = {f for span in _spans(BENCH_README) if (f := _flag(span.split()[0])) and f.startswith("--")}
    assert not flags - parser_flags - mr_flags, sorted(flags - parser_flags - mr_flags)


def test_the_pages_stay_the_size_their_readers_take() -> None:
    # README: users, about 380 lines (the settings table is generated and may gain a few rows);
    # bench/README: the method, the commands and the latest table per machine.
    assert len(README.read_text().splitlines()) <= 390
    assert len(BENCH_README.read_text().splitlines()) <= 300
