"""Scripts for the web UI's tests (tests/test_ui_*.py) and the events benchmark."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import finish, message_text, run, scripted, text, write

# Three steps with a one-second command each: long enough to watch (and reload) mid-task.
FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n"
three_steps = scripted(
    plan=[("Write fib.py", "Create fib.py that prints the first ten Fibonacci numbers."),
          ("Run it", "Run fib.py and check its output."),
          ("Write the notes", "Write NOTES.md about what was done.")],
    step_actions={
        1: [write("fib.py", FIB), run("sleep 1; python3 -m py_compile fib.py && echo compiled"),
            finish("fib.py written")],
        2: [run("sleep 1; python3 fib.py"), finish("fib.py prints [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]")],
        3: [write("NOTES.md", "# Notes\n\nfib.py prints the first ten Fibonacci numbers.\n"),
            run("sleep 1; wc -l NOTES.md"), finish("NOTES.md written")],
    },
)

# One step stuck in a 30 s command, for interrupting.
stuck = scripted(
    plan=[("Think hard", "Take a long time.")],
    step_actions={1: [run("echo started >> started.txt; sleep 30"), finish("done thinking")]},
)

# A text file, a binary file and a file that is too big for read_file, for the .zip download.
workspace_maker = scripted(
    plan=[("Make files", "Create a few files.")],
    step_actions={1: [write("src/hello.py", "print('hello')\n"),
                      run("printf '\\000\\377\\376' > blob.bin; head -c 300000 /dev/zero | tr '\\0' a > big.txt"),
                      finish("files made")]},
)


def structured(request: dict[str, Any]) -> Reply:
    """Answers like a small local model in structured mode: a tool call as JSON text."""
    if "make_plan" in json.dumps(request.get("response_format") or {}):
        return text(json.dumps({"tool": "make_plan", "args": {"steps": [{"title": "Say hi", "instructions": ""}]}}))
    last = message_text(request["messages"][-1])
    return text(json.dumps({"tool": "finish", "args": {"result": f"saw {len(last)} characters"}}))



# A module and its unittest tests, which pass: the harness's own run of them makes the
# task's verdict "verified" (issue 20 item 4).
WORDS = "def count_words(text):\n    return len(text.split())\n"
WORDS_TESTS = """import unittest

from words import count_words


class CountWords(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(count_words(""), 0)

    def test_one(self):
        self.assertEqual(count_words("hello"), 1)

    def test_spaces(self):
        self.assertEqual(count_words("  a  b   c "), 3)


if __name__ == "__main__":
    unittest.main()
"""
checked = scripted(
    plan=[("Write words.py and its tests", "Create words.py with count_words(text), and test_words.py "
                                           "with unittest tests for it; run the tests.")],
    step_actions={1: [write("words.py", WORDS), write("test_words.py", WORDS_TESTS),
                      run("python3 -m unittest -v test_words"), finish("words.py counts words; its 3 tests pass")]},
)
