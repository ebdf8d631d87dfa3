"""What the model is asked for in plain chat, when it writes code as text.

Three requests, all answered with fenced blocks and no tool grammar:

- **write**: one file, after the model chose `write_file(path)`. The file's current content is
  in view when it exists; a large existing file is changed with search/replace blocks.
- **files**: every file a request needs, named one by one (the pipeline, app/pipeline.py).
- **resample**: a file whose checks keep failing, asked for afresh from the request and the
  failing output. A file the task created is asked for without its failing code (a small model
  shown its own wrong code writes it again); a file that existed before is always shown, since
  it holds what nobody may lose.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.context import clip

SYSTEM = "You are a careful programmer. You answer with code only, in fenced code blocks."
MAX_FILE_CHARS = 12_000  # of a file shown in a request
MAX_REPORT_CHARS = 3_000  # of a check's output shown in a request
MAX_SHOWN_FILES_CHARS = 8_000  # of the other files shown (tests, what was read)
SAMPLED = 0.7  # the temperature of a fresh sample: greedy decoding writes the same file again
LARGE_FILE_LINES = 150  # an existing file longer than this is changed by search/replace blocks

_LANGUAGES = {".py": "python", ".sh": "bash", ".js": "javascript", ".ts": "typescript", ".json": "json",
              ".md": "markdown", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".html": "html",
              ".css": "css", ".txt": "text", ".cfg": "ini", ".ini": "ini", ".sql": "sql"}


def language(path: str) -> str:
    suffix = path[path.rfind("."):] if "." in path.rsplit("/", 1)[-1] else ""
    return _LANGUAGES.get(suffix, "")


def fenced(path: str, content: str, limit: int = MAX_FILE_CHARS) -> str:
    return f"{path}\n```{language(path)}\n{clip(content, limit).rstrip(chr(10))}\n```"


@dataclass(frozen=True)
class WriteRequest:
    request: str  # the step's prompt: the conversation, the workspace, the step
    path: str
    current: str | None  # the file's content now, or None if it does not exist
    change: str = ""  # what the model said it is writing the file for
    report: str = ""  # the latest failing check's output, if any
    others: tuple[tuple[str, str], ...] = ()  # other files worth seeing (tests, what was read)

    @property
    def clipped(self) -> bool:
        """Whether the file is shown only in part (too large, or read truncated): then it may be
        changed by search/replace blocks only, never written whole from what was shown."""
        return self.current is not None and (len(self.current) > MAX_FILE_CHARS or "[truncated" in self.current)

    @property
    def by_blocks(self) -> bool:
        """Whether the change is asked for as search/replace blocks (a large existing file)."""
        return self.current is not None and (self.current.count("\n") > LARGE_FILE_LINES or self.clipped)


def write_prompt(w: WriteRequest) -> str:
    parts = [w.request]
    shown = 0
    for path, content in w.others:
        if shown + len(content) > MAX_SHOWN_FILES_CHARS:
            break
        parts.append(f"The current content of {fenced(path, content)}")
        shown += len(content)
    if w.report:
        parts.append(f"The latest check failed:\n{clip(w.report, MAX_REPORT_CHARS)}")
    if w.current is not None:
        parts.append(f"The current content of {fenced(w.path, w.current)}")
    if w.change:
        parts.append(f"What to do in {w.path}: {w.change}")
    lang = language(w.path)
    if w.by_blocks:
        parts.append(
            f"Change {w.path} with search/replace blocks, each like this:\n<<<<<<< SEARCH\nexact lines of the "
            f"file\n=======\nthe new lines\n>>>>>>> REPLACE\nCopy the SEARCH lines exactly from the file.")
    else:
        keep = " Keep what is right in it and change what is needed." if w.current is not None else ""
        parts.append(f"Write {w.path} whole: complete code, every function with its body, no placeholders.{keep} "
                     f"Answer with the whole file in one ```{lang} code block.")
    return "\n\n".join(parts)


def files_prompt(request: str, shown: list[tuple[str, str]], report: str = "") -> str:
    """The pipeline's request: every file to create or change, each whole, named."""
    parts = [request]
    for path, content in shown:
        parts.append(f"The current content of {fenced(path, content)}")
    if report:
        parts.append(f"The checks of the files above failed:\n{clip(report, MAX_REPORT_CHARS)}\n"
                     "Fix the code so that they pass (fix a test only if the test itself is wrong).")
    parts.append("Answer with every file you create or change: for each, its path on a line of its own, then "
                 "the whole file in one fenced code block. Complete code, no placeholders.")
    return "\n\n".join(parts)


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
