"""The single-shot baseline of an own case: the request as one prompt, the answer as files.

The prompt is the case's message, then its starting files, each as a fenced block under a line
holding its path, then the instruction to answer with every file it creates or changes the
same way. The model cannot run anything: that is the point of the baseline.

The answer is read leniently, since a model seldom writes exactly the format it was shown. Each
fenced block (``` or ~~~, an unclosed last block runs to the end) is a file, named by the first
of these that holds a path (a name with one of the usual extensions, or a starting file's name):

1. the block's info string: ```python calc.py, ```calc.py, ```python title="calc.py";
2. the nearest non-empty line above it, whatever its dressing: `calc.py`, ### calc.py,
   **calc.py**, File: calc.py, calc.py:, "Here is the updated `calc.py`:" (a path in backticks
   or bold first, else the line's first path);
3. the block's first line, if it is a comment naming a path: # calc.py, # File: calc.py.

A block with no path is the starting .py file that defines one of the functions or classes it
defines, when exactly one does (and no other block named that file); else, when the answer has
exactly one code block and the case exactly one file it can be about (its only starting .py
file, or else the only .py file its message names), that file. Any other block with no path is
dropped. A path that is absolute or climbs out (..) is dropped; ./ is stripped. When a
path comes twice, the later block wins. Shell blocks with no path (```sh, ```bash, ```console)
are commands, not files.
"""

from __future__ import annotations

import re

from bench.eval.cases import Case

PROMPT = """{message}

{project}

You cannot run any command: answer in one go. Give the whole content of every file you create or \
change, each as a fenced code block right after a line that holds the file's path, like this:

{example}
```python
(the whole file)
```

Leave out the files you do not change."""

_EXTENSIONS = "py|txt|json|csv|md|cfg|ini|conf|toml|ya?ml|log|sh|html|js|css"
_PATH = re.compile(rf"(?<![\w/.-])((?:\.?/)?(?:[\w.-]+/)*[\w-][\w.-]*\.(?:{_EXTENSIONS}))(?![\w/-])")
_MARKED = re.compile(r"`([^`\n]+)`|\*\*([^*\n]+)\*\*")
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([^\n`]*)\n", re.MULTILINE)
_COMMENT_PATH = re.compile(r"^\s*(#|//)\s*(file(name)?\s*:\s*)?(\S+)\s*$", re.IGNORECASE)
_DEFINES = re.compile(r"^(?:def|class)\s+(\w+)", re.MULTILINE)
_SHELL = {"sh", "bash", "shell", "console", "zsh", "shell-session"}


def prompt(case: Case) -> str:
    """The case's message and its starting files, and how to answer."""
    if case.files:
        blocks = [f"{path}\n```{_language(path)}\n{content.rstrip()}\n```" for path, content in case.files.items()]
        project = "The project's files:\n\n" + "\n\n".join(blocks)
    else:
        project = "The project is empty so far."
    # The example names a file of the case: given `path/to/file.py`, the 1.5B wrote its files
    # under a literal path/to/.
    example = next((p for p in case.files if p.endswith(".py")), "main.py")
    return PROMPT.format(message=case.message, project=project, example=example)


def parse(answer: str, case: Case) -> dict[str, str]:
    """The files the answer gives, {path: content}, read as the module docstring says."""
    known = set(case.files)
    named: dict[str, str] = {}
    unnamed: list[str] = []
    blocks = _blocks(answer)
    for before, info, content in blocks:
        path = _path_in(info, known) or _line_path(before, known) or _comment_path(content, known)
        if path is None:
            if info.split()[:1] and info.split()[0].lower() in _SHELL:
                continue
            unnamed.append(content)
        elif (clean := _safe(path)) is not None:
            named[clean] = content
    for content in unnamed:
        if (same := _defining(content, case)) is not None and same not in named:
            named[same] = content
    if not named and len(blocks) == 1 and len(unnamed) == 1 and (only := _only_target(case)) is not None:
        named[only] = unnamed[0]
    return named


def overlay(case: Case, files: dict[str, str]) -> dict[str, str]:
    """The workspace the answer leaves: the starting files with the answer's files over them."""
    return {**case.files, **files}


def _blocks(answer: str) -> list[tuple[str, str, str]]:
    """Each fenced block as (the text before it since the last block, its info string, its content)."""
    found = []
    position = 0
    while (opening := _FENCE.search(answer, position)) is not None:
        fence, info = opening.group(1), opening.group(2).strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0]) * 3}+[ \t]*$", re.MULTILINE).search(answer, opening.end())
        end = closing.start() if closing else len(answer)
        found.append((answer[position:opening.start()], info, answer[opening.end():end]))
        position = closing.end() if closing else len(answer)
    return found


def _path_in(text: str, known: set[str]) -> str | None:
    """A path in `text`: one in backticks or bold first, else the first one."""
    for match in _MARKED.finditer(text):
        inner = (match.group(1) or match.group(2)).strip()
        if (found := _first_path(inner, known)) is not None:
            return found
    return _first_path(text, known)


def _first_path(text: str, known: set[str]) -> str | None:
    text = text.replace('"', " ").replace("'", " ").replace("=", " ")
    paths = [m.group(1) for m in _PATH.finditer(text)]
    names = [word for word in re.split(r"[\s:,*#`()]+", text) if word in known]
    return (paths or names or [None])[0]


def _line_path(before: str, known: set[str]) -> str | None:
    lines = [line for line in before.splitlines() if line.strip()]
    return _path_in(lines[-1], known) if lines else None


def _comment_path(content: str, known: set[str]) -> str | None:
    first = content.split("\n", 1)[0]
    match = _COMMENT_PATH.match(first)
    return _first_path(match.group(4), known) if match else None


def _safe(path: str) -> str | None:
    while path.startswith("./"):
        path = path[2:]
    path = path.removeprefix("path/to/")  # the placeholder an earlier prompt showed, copied
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or not path:
        return None
    return path


def _defining(content: str, case: Case) -> str | None:
    """The one starting .py file that defines a function or class this content defines."""
    names = set(_DEFINES.findall(content))
    files = [path for path, text in case.files.items() if path.endswith(".py") and names & set(_DEFINES.findall(text))]
    return files[0] if len(files) == 1 else None


def _only_target(case: Case) -> str | None:
    python = [path for path in case.files if path.endswith(".py")]
    if python:
        return python[0] if len(python) == 1 else None
    named = sorted(set(re.findall(r"[\w/.-]+\.py\b", case.message)))
    return named[0] if len(named) == 1 else None


def _language(path: str) -> str:
    return {"py": "python", "json": "json", "csv": "csv", "sh": "sh"}.get(path.rsplit(".", 1)[-1], "")
