"""The documentation agrees with the code (as datasette tests its docs): every ``candor ...``
command and every ``--option`` shown in docs/*.md and README.md exists in the real Typer app,
and every setting the code reads from the environment is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SRC = ROOT / "src" / "candor"

FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
ENV_NAME = re.compile(r"\bCANDOR_[A-Z0-9_]+\b")
#: options of other programs that appear in inline code on their own (aws CLI, pytest)
#: and curl
FOREIGN_OPTIONS = {"--endpoint-url", "--profile", "--region", "--no-verify-ssl", "--aws-sigv4"}


def root_command():
    from candor.cli import app

    return typer.main.get_command(app)


def _is_group(cmd) -> bool:
    """Typer may bring its own click: recognise a group by its subcommands."""
    return isinstance(getattr(cmd, "commands", None), dict)


def _joined(block: str) -> list[str]:
    """Lines of a code block with backslash continuations joined."""
    return block.replace("\\\n", " ").splitlines()


def doc_commands() -> list[tuple[str, str]]:
    """(document, command line) for every ``candor ...`` in code blocks and inline code."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = FENCE.findall(text)
        prose = FENCE.sub("", text)
        lines = [ln for b in blocks for ln in _joined(b)]
        lines += INLINE.findall(prose)
        for line in lines:
            line = line.split("#", 1)[0].strip() if " #" in line else line.strip()
            line = re.sub(r"^\$\s*", "", line)
            line = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", line)  # VAR=value candor ...
            if re.match(r"candor(\s|$)", line):
                found.append((doc.name, line))
    return found


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def check_command(root, line: str) -> list[str]:
    """Problems with one documented command line: unknown subcommands or options."""
    problems = []
    words = _tokens(line)[1:]
    chains: list[list] = [[root]]
    i = 0
    while i < len(words) and all(_is_group(c[-1]) for c in chains):
        word = words[i].strip("[]")
        if not re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", word):
            break
        nxt = []
        for chain in chains:
            for alt in word.split("|"):
                sub = chain[-1].commands.get(alt)  # type: ignore[union-attr]
                if sub is None:
                    problems.append(f"no command {' '.join(c.name or 'candor' for c in chain)} {alt}")
                else:
                    nxt.append(chain + [sub])
        if not nxt:
            return problems
        chains = nxt
        i += 1
    for raw in words[i:]:
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", raw):
            for chain in chains:
                known = {o for c in chain for p in c.params for o in (*p.opts, *p.secondary_opts)}
                known.add("--help")
                if opt not in known:
                    problems.append(f"{' '.join(c.name or 'candor' for c in chain)}: no option {opt}")
    return problems


def test_the_docs_show_commands():
    """The extraction itself works: the docs do show candor commands."""
    assert len(doc_commands()) > 20


def test_the_checker_catches_a_wrong_command_and_option():
    root = root_command()
    assert check_command(root, "candor collection create c1") == []
    assert check_command(root, "candor collection nosuch c1")
    assert check_command(root, "candor collection create c1 --no-such-option")


def test_every_documented_command_and_option_exists():
    root = root_command()
    problems = sorted({f"{doc}: `{line}`: {p}" for doc, line in doc_commands()
                       for p in check_command(root, line)})
    assert not problems, "\n".join(problems)


def _all_options(cmd) -> set[str]:
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    if _is_group(cmd):
        for sub in cmd.commands.values():
            opts |= _all_options(sub)
    return opts


def test_every_documented_option_in_inline_code_exists_somewhere():
    """A ``--option`` mentioned on its own in prose belongs to some candor command."""
    known = _all_options(root_command()) | {"--help"} | FOREIGN_OPTIONS
    problems = []
    for doc in DOCS:
        prose = FENCE.sub("", doc.read_text())
        for code in INLINE.findall(prose):
            if re.match(r"\s*(\$\s*)?(candor|aws|python|pip|pytest)\b", code):
                continue  # whole command lines are checked against their own command
            for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", code):
                if opt not in known:
                    problems.append(f"{doc.name}: `{code}`: no candor command has {opt}")
    assert not problems, "\n".join(sorted(set(problems)))


def _find(root, words: list[str]):
    cmd = root
    for w in words:
        cmd = cmd.commands[w]
    return cmd


def option_tables() -> list[tuple[str, str, str, str]]:
    """(document, command, option, documented default) from tables headed ``| option | default``
    after a ``candor ...`` command, where a row names one option and one literal default."""
    rows = []
    for doc in DOCS:
        command, in_table = None, False
        for line in doc.read_text().splitlines():
            m = re.search(r"candor ((?:[a-z][a-z-]* ?)+)", line)
            if m and not line.startswith("|"):
                command = m.group(1).split()
            if line.startswith("|") and re.match(r"\|\s*option\s*\|\s*default", line):
                in_table = True
                continue
            if not line.startswith("|"):
                in_table = False
                continue
            if in_table and command:
                cells = [c.strip() for c in line.strip("|").split("|")]
                opts = re.findall(r"`(--[a-z0-9-]+)[^`]*`", cells[0])
                defaults = re.findall(r"`([^`]+)`", cells[1]) if len(cells) > 1 else []
                if opts and len(opts) == len(defaults) and not any("$" in d for d in defaults):
                    rows += [(doc.name, " ".join(command), o, d) for o, d in zip(opts, defaults)]
    return rows


def test_documented_defaults_are_the_real_defaults(monkeypatch):
    """An option table's default column says what the command really uses (``serve``'s backend
    and detector are resolved at run time: compared with what config resolves to)."""
    from candor import config

    for name in ("CANDOR_BACKEND", "CANDOR_DETECTOR"):
        monkeypatch.delenv(name, raising=False)
    resolved = {"--backend": config.DEFAULT_BACKEND, "--detector": config.DEFAULT_DETECTOR}
    root = root_command()
    rows = option_tables()
    assert any(o == "--port" for _, _, o, _ in rows), "the serve option table is read"
    problems = []
    for doc, command, opt, documented in rows:
        try:
            cmd = _find(root, command.split())
        except KeyError:
            continue
        param = next((p for p in cmd.params if opt in p.opts), None)
        if param is None:
            problems.append(f"{doc}: candor {command} has no {opt}")
            continue
        real = param.default if param.default is not None else resolved.get(opt)
        if real is not None and str(real) != documented and not (
                isinstance(real, float) and f"{real:g}" == documented):
            problems.append(f"{doc}: candor {command} {opt}: documented {documented!r}, real {real!r}")
    assert not problems, "\n".join(problems)


def environment_settings() -> set[str]:
    """The environment variables candor reads: :data:`candor.config.ENV`, the only reader."""
    from candor import config

    return set(config.ENV)


def test_every_environment_setting_is_documented():
    text = "\n".join(doc.read_text() for doc in DOCS)
    documented = {name for name in environment_settings() if f"`{name}`" in text}
    settings = environment_settings()
    assert "CANDOR_DATA_DIR" in settings
    missing = sorted(settings - documented)
    assert not missing, f"settings read from the environment but not documented: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_exist(doc):
    assert doc.read_text().strip()
